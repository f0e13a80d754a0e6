"""moto's server, running moto's own code for one request at a time.

moto's DynamoDB transactions deep-copy the tables for rollback while other request threads may be
writing them ("dictionary changed size during iteration", answered as an HTML 500), so the stock
threaded `moto_server` fails under the concurrent writes our sync makes. Here connections are
still served by threads (an idle pooled connection never blocks anyone), but the application runs
under one lock. Python's GIL serialises moto's work anyway, so this costs little.

    python infra/moto_serial.py -H 127.0.0.1 -p 5000
"""

import argparse
import os
import threading

from werkzeug.serving import run_simple

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app


def serialised(app):
    lock = threading.Lock()

    def call(environ, start_response):
        with lock:
            # Drain the response inside the lock: moto may build it lazily.
            return list(app(environ, start_response))

    return call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=5000)
    args = parser.parse_args()
    os.environ.setdefault("MOTO_PORT", str(args.port))
    app = serialised(DomainDispatcherApplication(create_backend_app))
    run_simple(args.host, args.port, app, threaded=True, use_reloader=False, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()

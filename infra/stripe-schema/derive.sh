#!/usr/bin/env bash
# Derives the JSON Schema of the objects the stripe-stub serves from the `stripe` npm package's
# TypeScript definitions (the package pins one Stripe API version), and writes it to
# infra/stripe-stub/schema/stripe-<version>.schema.json. Needs node >= 20 and npm.
#
#   bash infra/stripe-schema/derive.sh
#
# The tools (stripe, ts-json-schema-generator, typescript; exact versions in package.json and
# package-lock.json) are installed into infra/stripe-schema/node_modules, which git ignores.
# The test command does not run this: the stub's tests validate against the committed file.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$HERE"
if [ -f package-lock.json ]; then
  npm ci --no-audit --no-fund
else
  npm install --no-audit --no-fund
fi
node derive.mjs

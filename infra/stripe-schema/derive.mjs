// Derives infra/stripe-stub/schema/stripe-<version>.schema.json from the `stripe` npm package's
// TypeScript definitions (see README.md). Run through derive.sh, which installs the pinned tools.
import { createGenerator, ExposeNodeParser } from 'ts-json-schema-generator';
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const stripePkg = JSON.parse(readFileSync(join(here, 'node_modules/stripe/package.json'), 'utf8'));
const versionSource = readFileSync(join(here, 'node_modules/stripe/esm/apiVersion.d.ts'), 'utf8');
const apiVersion = /ApiVersion = "([^"]+)"/.exec(versionSource)?.[1];
if (!apiVersion) throw new Error('no ApiVersion in stripe/esm/apiVersion.d.ts');

// The generator names a definition by its name inside its file, so `Card` (resources/Cards.d.ts)
// and Issuing's `Card` (resources/Issuing/Cards.d.ts) would collide. Qualify names of the
// resource sub-folders with the folder, as the SDK's namespaces do (`Issuing.Card`).
const definitionName = ExposeNodeParser.prototype.getDefinitionName;
ExposeNodeParser.prototype.getDefinitionName = function (node, context) {
  const name = definitionName.call(this, node, context);
  const file = node.getSourceFile().fileName;
  const folder = /\/esm\/resources\/(.+)\/[^/]+\.d\.ts$/.exec(file)?.[1];
  return folder ? `${folder.replaceAll('/', '.')}.${name}` : name;
};

const generator = createGenerator({
  path: join(here, 'entry.ts'),
  tsconfig: join(here, 'tsconfig.json'),
  type: '*',
  expose: 'export',
  topRef: true,
  jsDoc: 'none',
  // Stripe's object interfaces are closed: a field the type does not declare is a shape bug.
  additionalProperties: false,
  skipTypeCheck: true,
  sortProps: true,
});
const schema = generator.createSchema('*');
// `Decimal` is the SDK's branded class for decimal strings (e.g. `unit_amount_decimal`); on the
// wire it is a JSON string of digits, which is what the stub serves and the schema must check.
if (!schema.definitions.Decimal) throw new Error('no Decimal definition: check the mapping below');
schema.definitions.Decimal = { type: 'string', pattern: '^-?[0-9]+(\\.[0-9]+)?$' };
// Only the Stub* aliases are entry points; the rest are their dependencies.
const roots = Object.keys(schema.definitions).filter((name) => name.startsWith('Stub')).sort();
const out = {
  $schema: 'http://json-schema.org/draft-07/schema#',
  $comment:
    `Derived by infra/stripe-schema/derive.sh from the type definitions of the stripe npm package ` +
    `${stripePkg.version} (API version ${apiVersion}). Do not edit; regenerate.`,
  'x-stripe-api-version': apiVersion,
  'x-stripe-npm-version': stripePkg.version,
  'x-roots': roots,
  definitions: schema.definitions,
};
const target = join(here, '..', 'stripe-stub', 'schema', `stripe-${apiVersion}.schema.json`);
mkdirSync(dirname(target), { recursive: true });
writeFileSync(target, JSON.stringify(out, null, 1) + '\n');
console.log(`wrote ${target}: ${Object.keys(schema.definitions).length} definitions; roots ${roots.join(', ')}`);

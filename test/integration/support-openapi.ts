// A small structural validator for OpenAI's OpenAPI 3.1 description, enough to check Spillway's responses: $ref,
// required properties (recursively), type (3.1 type arrays and 3.0 `nullable`), enum/const, anyOf/oneOf/allOf,
// items and additionalProperties. Not a full JSON Schema implementation; no dependency on one.
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';

export type Schema = { [key: string]: unknown };

export interface OpenApiDoc {
  components: { schemas: Record<string, Schema> };
}

export function loadOpenApi(url: URL): OpenApiDoc {
  return parse(readFileSync(url, 'utf8')) as OpenApiDoc;
}

/** Problems found validating `value` against the named component schema; [] when it conforms. */
export function validateComponent(doc: OpenApiDoc, name: string, value: unknown): string[] {
  const schema = doc.components.schemas[name];
  if (schema === undefined) throw new Error(`no component schema named ${name}`);
  return validate(doc, schema, value, '$');
}

function resolveRef(doc: OpenApiDoc, ref: string): Schema {
  if (!ref.startsWith('#/')) throw new Error(`only local $refs are supported: ${ref}`);
  let node: unknown = doc;
  for (const part of ref.slice(2).split('/')) {
    const key = part.replace(/~1/g, '/').replace(/~0/g, '~');
    node = (node as Record<string, unknown> | undefined)?.[key];
  }
  if (node === undefined || node === null || typeof node !== 'object') throw new Error(`unresolvable $ref ${ref}`);
  return node as Schema;
}

function typeOf(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  return typeof value;
}

function matchesType(type: string, value: unknown): boolean {
  switch (type) {
    case 'null':
      return value === null;
    case 'integer':
      return Number.isInteger(value);
    case 'number':
      return typeof value === 'number' && Number.isFinite(value);
    case 'string':
    case 'boolean':
      return typeof value === type;
    case 'array':
      return Array.isArray(value);
    case 'object':
      return value !== null && typeof value === 'object' && !Array.isArray(value);
    default:
      throw new Error(`unknown schema type ${type}`);
  }
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

export function validate(doc: OpenApiDoc, schema: Schema, value: unknown, path: string): string[] {
  // OpenAPI 3.0's `nullable` (still used in places of this 3.1 document), also next to a $ref.
  if (value === null && schema.nullable === true) return [];

  const problems: string[] = [];
  if (typeof schema.$ref === 'string') {
    problems.push(...validate(doc, resolveRef(doc, schema.$ref), value, path));
  }

  if (schema.type !== undefined) {
    const types = Array.isArray(schema.type) ? (schema.type as string[]) : [schema.type as string];
    if (!types.some((t) => matchesType(t, value))) {
      return [...problems, `${path}: expected ${types.join(' | ')}, got ${typeOf(value)}`];
    }
  }
  if (Array.isArray(schema.enum) && !schema.enum.some((allowed) => allowed === value)) {
    problems.push(`${path}: ${JSON.stringify(value)} is not one of ${JSON.stringify(schema.enum)}`);
  }
  if ('const' in schema && schema.const !== value) {
    problems.push(`${path}: expected the constant ${JSON.stringify(schema.const)}, got ${JSON.stringify(value)}`);
  }

  if (Array.isArray(schema.allOf)) {
    for (const branch of schema.allOf as Schema[]) problems.push(...validate(doc, branch, value, path));
  }
  for (const keyword of ['anyOf', 'oneOf'] as const) {
    const branches = schema[keyword];
    if (!Array.isArray(branches)) continue;
    const results = (branches as Schema[]).map((branch) => validate(doc, branch, value, path));
    if (!results.some((r) => r.length === 0)) {
      // Report the branch that came closest: its problems say the most about what is wrong.
      const closest = results.reduce((best, r) => (r.length < best.length ? r : best));
      problems.push(`${path}: matches none of the ${keyword} branches; closest: ${closest.join('; ')}`);
    }
  }

  if (isPlainObject(value)) {
    const properties = (schema.properties ?? {}) as Record<string, Schema>;
    for (const name of (schema.required ?? []) as string[]) {
      if (value[name] === undefined) problems.push(`${path}.${name}: required property is missing`);
    }
    for (const [name, child] of Object.entries(value)) {
      if (child === undefined) continue;
      const propertySchema = properties[name];
      if (propertySchema !== undefined) {
        problems.push(...validate(doc, propertySchema, child, `${path}.${name}`));
      } else if (schema.additionalProperties === false) {
        problems.push(`${path}.${name}: property not allowed`);
      } else if (isPlainObject(schema.additionalProperties)) {
        problems.push(...validate(doc, schema.additionalProperties, child, `${path}.${name}`));
      }
    }
  }
  if (Array.isArray(value) && isPlainObject(schema.items)) {
    const items = schema.items;
    value.forEach((item, i) => problems.push(...validate(doc, items, item, `${path}[${i}]`)));
  }
  return problems;
}

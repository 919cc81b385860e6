/**
 * Small TypeBox helpers for the config schema and the kinds' settings schemas. They keep the JSON
 * exactly as ajv's error messages need it (`enum` and `const`, not TypeBox's `anyOf` of literals,
 * whose errors would be a pile of "must be equal to constant") and give the types after
 * validation has filled in the defaults.
 */
import { Type, type Static, type TSchema, type TUnsafe } from "@sinclair/typebox";

/**
 * A key the config may leave out and validation fills in: optional in the JSON schema (not in
 * `required`), present in the static type, which is the config as the bridge reads it.
 */
export function Defaulted<T extends TSchema>(schema: T, value: Static<T>): T {
  return Type.Optional({ ...schema, default: value }) as unknown as T;
}

/** A block the config may leave out: it starts as `{}`, and its keys' defaults fill it. */
export function DefaultedBlock<T extends TSchema>(schema: T): T {
  return Type.Optional({ ...schema, default: {} }) as unknown as T;
}

/** One of a few strings: `{ enum: [...] }`, so that a wrong value names the allowed ones. */
export function StringEnum<const V extends readonly string[]>(values: V): TUnsafe<V[number]> {
  return Type.Unsafe<V[number]>({ enum: [...values] });
}

/** Exactly this string: `{ const: value }`. */
export function Const<const V extends string>(value: V): TUnsafe<V> {
  return Type.Unsafe<V>({ const: value });
}

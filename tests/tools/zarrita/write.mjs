// Writes an NGFF 0.5 image with zarrita (https://github.com/manzt/zarrita.js), a writer
// stackproc's authors did not write: the group's attributes as given, and its array "0" of
// uint16 pixels (C order, little endian, from IN.raw) in chunks of one plane, uncompressed.
//   node write.mjs STORE IN.raw '{"shape":[...],"dimension_names":[...],"attributes":{...}}'
import * as zarr from "zarrita";
import FileSystemStore from "@zarrita/storage/fs";
import { readFileSync } from "node:fs";

const [store, raw, spec] = process.argv.slice(2);
const { shape, dimension_names, attributes } = JSON.parse(spec);
const root = zarr.root(new FileSystemStore(store));
await zarr.create(root, { attributes });
const chunkShape = shape.map((n, i) => (i < shape.length - 2 ? 1 : n));
const array = await zarr.create(root.resolve("0"), {
  shape, chunkShape, dtype: "uint16", dimensionNames: dimension_names, fillValue: 0,
  codecs: [{ name: "bytes", configuration: { endian: "little" } }],
});
const bytes = readFileSync(raw);
const data = new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 2);
const stride = shape.map((_, i) => shape.slice(i + 1).reduce((a, b) => a * b, 1));
await zarr.set(array, null, { data, shape, stride });

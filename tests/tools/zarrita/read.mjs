// Reads one array of a Zarr store with zarrita (https://github.com/manzt/zarrita.js), a reader
// stackproc's authors did not write: writes its pixels, C order and little endian, to OUT.raw
// and prints what zarrita says of it as one JSON line.
//   node read.mjs STORE ARRAY_PATH OUT.raw     (ARRAY_PATH "" for a store that is an array)
import * as zarr from "zarrita";
import FileSystemStore from "@zarrita/storage/fs";
import { writeFileSync } from "node:fs";

const [store, path, out] = process.argv.slice(2);
const root = zarr.root(new FileSystemStore(store));
let group = null;
if (path !== "") group = await zarr.open(root, { kind: "group" });
const array = await zarr.open(path === "" ? root : root.resolve(path), { kind: "array" });
const all = await zarr.get(array);
const bytes = new Uint8Array(all.data.buffer, all.data.byteOffset, all.data.byteLength);
writeFileSync(out, bytes);
console.log(JSON.stringify({
  shape: array.shape,
  dtype: array.dtype,
  chunks: array.chunks,
  group: group ? group.attrs : null,
}));

// Opus packets in, 16 kHz mono float32 PCM out, through libopus 1.5's decoder with its speech-enhancement
// post-filters (none | LACE | NoLACE), from the npm package @wasm-audio-decoders/opus-ml (MIT).
// Driven by melcnn.training.opus_ml over stdin/stdout, one request after another:
//   request:  u32 payload length, then payload = u8 mode (0 none, 1 lace, 2 nolace), u16 pre-skip (48 kHz
//             samples, as in the OpusHead), u32 packet count, then per packet u16 length + its bytes
//   response: u32 sample count (0xffffffff: error, then u32 length + UTF-8 message), then float32 samples
// All integers little-endian. The npm package is looked up under $MELCNN_OPUS_ML_DIR/node_modules.
import { createRequire } from "node:module";
import { join } from "node:path";

const require = createRequire(join(process.env.MELCNN_OPUS_ML_DIR || process.cwd(), "node_modules", "x.js"));
const { OpusMLDecoder } = await import(require.resolve("@wasm-audio-decoders/opus-ml"));
const MODES = ["none", "lace", "nolace"];
const decoders = new Map();

async function decoder(mode, preSkip) {
  const key = `${mode}:${preSkip}`;
  let d = decoders.get(key);
  if (!d) {
    d = new OpusMLDecoder({ speechQualityEnhancement: mode, sampleRate: 16000, channels: 1, preSkip });
    await d.ready;
    decoders.set(key, d);
  } else {
    await d.reset();
  }
  return d;
}

function reply(buf) {
  return new Promise((resolve) => (process.stdout.write(buf) ? resolve() : process.stdout.once("drain", resolve)));
}

async function handle(p) {
  try {
    const mode = MODES[p.readUInt8(0)];
    if (!mode) throw new Error(`unknown mode ${p.readUInt8(0)}`);
    const preSkip = p.readUInt16LE(1);
    const n = p.readUInt32LE(3);
    const packets = [];
    let o = 7;
    for (let i = 0; i < n; i++) {
      const len = p.readUInt16LE(o);
      packets.push(new Uint8Array(p.subarray(o + 2, o + 2 + len)));
      o += 2 + len;
    }
    const d = await decoder(mode, preSkip);
    const r = d.decodeFrames(packets);
    if (r.errors.length) throw new Error(`${r.errors.length} of ${n} packets undecodable: ${r.errors[0].message}`);
    const ch = r.channelData[0] || new Float32Array(0);
    const head = Buffer.alloc(4);
    head.writeUInt32LE(ch.length, 0);
    await reply(Buffer.concat([head, Buffer.from(ch.buffer, ch.byteOffset, ch.length * 4)]));
  } catch (e) {
    const msg = Buffer.from(String(e && e.message ? e.message : e));
    const head = Buffer.alloc(8);
    head.writeUInt32LE(0xffffffff, 0);
    head.writeUInt32LE(msg.length, 4);
    await reply(Buffer.concat([head, msg]));
  }
}

let pending = Buffer.alloc(0);
let busy = Promise.resolve();
process.stdin.on("data", (chunk) => {
  pending = Buffer.concat([pending, chunk]);
  while (pending.length >= 4) {
    const len = pending.readUInt32LE(0);
    if (pending.length < 4 + len) break;
    const payload = pending.subarray(4, 4 + len);
    pending = pending.subarray(4 + len);
    busy = busy.then(() => handle(Buffer.from(payload)));
  }
});
process.stdin.on("end", () => busy.then(() => process.exit(0)));

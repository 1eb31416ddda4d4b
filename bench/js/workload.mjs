// The client workload sotong-bench runs, unchanged, against the reference automerge-repo sync
// server and against sotong-server: pairs of one citizen's devices, each device a reference
// @automerge/automerge-repo client (no storage) on its own WebSocket.
//   1. create: device A creates a proposal (valid for Sotong's schema); once a sync message
//      from the server tells A that the server holds it, device B opens it with `find`.
//      Latency runs from A's create to B holding the document.
//   2. edit: A splices one character into the body; latency runs until B's heads equal A's.
//      One edit in flight per pair; the pairs run concurrently.
// A warm-up document per pair comes first and is not measured.
// Only completed operations are timed; failures and timeouts are counted apart.
// Server CPU (utime+stime ticks from /proc/<pid>/stat) and memory are read at stage
// boundaries, after the server went quiet, and printed with the samples as ONE JSON line.
//
// Usage: node workload.mjs --config FILE --pid SERVER_PID [--docs-per-pair 5]
//          [--edits-per-pair 50] [--chars 5000] [--edit-spacing-ms 120] [--timeout-ms 15000]
// FILE: {"server":"http://127.0.0.1:PORT","auth":"ticket"|"none","pairs":[{"a":TOKEN,"b":TOKEN}|{}]}
//
// automerge-repo throttles the sync messages of one document to one per 100 ms (client and
// reference server alike); edits on one document are spaced by --edit-spacing-ms so that the
// throttle never delays a relay and latency measures the servers, not the timer.

import fs from "node:fs"
import { parseArgs } from "node:util"
import { decodeSyncMessage, getHeads } from "@automerge/automerge"
import { Repo, ImmutableString, splice } from "@automerge/automerge-repo"
import { WebSocketClientAdapter } from "@automerge/automerge-repo-network-websocket"

const { values } = parseArgs({
  options: {
    config: { type: "string" },
    pid: { type: "string" },
    "docs-per-pair": { type: "string", default: "5" },
    "edits-per-pair": { type: "string", default: "50" },
    chars: { type: "string", default: "5000" },
    "edit-spacing-ms": { type: "string", default: "120" },
    "timeout-ms": { type: "string", default: "15000" },
  },
  strict: true,
})
const config = JSON.parse(fs.readFileSync(values.config, "utf8"))
const pid = values.pid
const docsPerPair = Number(values["docs-per-pair"])
const editsPerPair = Number(values["edits-per-pair"])
const chars = Number(values.chars)
const spacingMs = Number(values["edit-spacing-ms"])
const timeoutMs = Number(values["timeout-ms"])

const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))
const now = () => performance.now()

function cpuTicks() {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8")
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
  return Number(f[11]) + Number(f[12]) // utime + stime
}

function memKb() {
  const status = fs.readFileSync(`/proc/${pid}/status`, "utf8")
  const get = key => Number(status.match(new RegExp(`^${key}:\\s+(\\d+)`, "m"))?.[1] ?? 0)
  return { rss_kb: get("VmRSS"), hwm_kb: get("VmHWM") }
}

/** Waits until the server used no CPU for 500 ms (it may still be saving), at most 10 s. */
async function quiet() {
  const until = now() + 10_000
  let last = cpuTicks()
  while (now() < until) {
    await sleep(500)
    const t = cpuTicks()
    if (t === last) return t
    last = t
  }
  return last
}

function withTimeout(promise, ms, what) {
  let timer
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new TimeoutError(what)), ms)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

class TimeoutError extends Error {}

/** Pseudo-random text: half Hangul syllables, a third ASCII letters, a sixth spaces. */
function text(n, seed) {
  let s = BigInt(seed)
  const next = m => {
    s = (s * 6364136223846793005n + 1442695040888963407n) & 0xffffffffffffffffn
    return Number((s >> 33n) % BigInt(m))
  }
  let out = ""
  for (let i = 0; i < n; i++) {
    const r = next(6)
    if (r <= 2) out += String.fromCharCode(0xac00 + next(11172))
    else if (r <= 4) out += String.fromCharCode(97 + next(26))
    else out += " "
  }
  return out
}

async function connect(token) {
  const base = new URL(config.server)
  const url = new URL(config.auth === "ticket" ? "/v1/sync" : "/", base)
  url.protocol = "ws:"
  if (config.auth === "ticket") {
    const res = await fetch(new URL("/v1/auth/ticket", base), {
      method: "POST",
      headers: { authorization: `Bearer ${token}` },
    })
    if (!res.ok) throw new Error(`POST /v1/auth/ticket answered ${res.status}`)
    url.searchParams.set("ticket", (await res.json()).ticket)
  }
  const adapter = new WebSocketClientAdapter(url.toString())
  const joined = new Promise(resolve => adapter.once("peer-candidate", resolve))
  const repo = new Repo({ network: [adapter] })
  await withTimeout(joined, timeoutMs, "connect")
  return { repo, adapter }
}

/** Resolves when a sync message from the server to `device` says that the server holds
 * `handle`'s heads (its first answer about a new document is that of an empty one). */
function serverHas(device, handle) {
  const heads = getHeads(handle.doc())
  return new Promise(resolve => {
    const onMessage = m => {
      if (
        m.type === "sync" &&
        m.documentId === handle.documentId &&
        heads.every(h => decodeSyncMessage(m.data).heads.includes(h))
      ) {
        device.adapter.off("message", onMessage)
        resolve()
      }
    }
    device.adapter.on("message", onMessage)
  })
}

const sameHeads = (x, y) => x.length === y.length && x.every(h => y.includes(h))

/** Resolves when `handle`'s heads equal `heads`. */
function reached(handle, heads) {
  if (sameHeads(handle.heads(), heads)) return Promise.resolve()
  return new Promise(resolve => {
    const onChange = () => {
      if (sameHeads(handle.heads(), heads)) {
        handle.off("change", onChange)
        resolve()
      }
    }
    handle.on("change", onChange)
  })
}

const result = {
  pairs: config.pairs.length,
  docs_per_pair: docsPerPair,
  edits_per_pair: editsPerPair,
  chars,
  edit_spacing_ms: spacingMs,
  errors: [],
}
const noteError = e => {
  if (result.errors.length < 10) result.errors.push(String(e?.message ?? e))
}

async function main() {
  const devices = []
  for (const p of config.pairs) {
    devices.push({ a: await connect(p.a), b: await connect(p.b) })
  }
  await quiet()
  result.connected = { ...memKb() }

  // Warm-up, not measured: one document per pair, created, opened and edited once, so that
  // neither server's first-use costs (the Node server's JIT and wasm) land on the figures.
  await Promise.all(
    devices.map(async (d, pair) => {
      try {
        const handle = d.a.repo.create({
          type: new ImmutableString("proposal"),
          title: `warm-up ${pair}`,
          body: text(chars, 7 + pair),
          category: new ImmutableString("transport"),
        })
        await withTimeout(serverHas(d.a, handle), timeoutMs, "warm-up")
        const opened = await withTimeout(d.b.repo.find(handle.url), timeoutMs, "warm-up")
        handle.change(doc => splice(doc, ["body"], 0, 0, "w"))
        await withTimeout(reached(opened, handle.heads()), timeoutMs, "warm-up")
      } catch (e) {
        noteError(`warm-up: ${e?.message ?? e}`)
      }
    }),
  )
  await quiet()
  result.warmed_up = { ...memKb() }

  // Stage 1: create on A, open on B. The bodies are made beforehand, outside the timing.
  const bodies = devices.map((_d, pair) =>
    Array.from({ length: docsPerPair }, (_x, i) => text(chars, 1000 + pair * 100 + i)),
  )
  const created = devices.map(() => [])
  const createMs = []
  // Where a create's time goes: A's own work, until the server holds it, B's find.
  const split = { a_create_ms: [], until_server_holds_ms: [], b_open_ms: [] }
  let createFailed = 0
  let createTimeouts = 0
  let ticks0 = cpuTicks()
  let t0 = now()
  await Promise.all(
    devices.map(async (d, pair) => {
      for (let i = 0; i < docsPerPair; i++) {
        try {
          const start = now()
          const handle = d.a.repo.create({
            type: new ImmutableString("proposal"),
            title: `제안 ${pair}-${i}`,
            body: bodies[pair][i],
            category: new ImmutableString("transport"),
          })
          const made = now()
          await withTimeout(serverHas(d.a, handle), timeoutMs, "server holds it")
          const held = now()
          const opened = await withTimeout(d.b.repo.find(handle.url), timeoutMs, "open on B")
          if (String(opened.doc()?.body ?? "").length !== chars) {
            throw new Error("device B opened the document without its body")
          }
          createMs.push(now() - start)
          split.a_create_ms.push(made - start)
          split.until_server_holds_ms.push(held - made)
          split.b_open_ms.push(now() - held)
          created[pair].push({ a: handle, b: opened })
        } catch (e) {
          if (e instanceof TimeoutError) createTimeouts++
          else createFailed++
          noteError(e)
        }
      }
    }),
  )
  let wall = (now() - t0) / 1000
  let ticks1 = await quiet()
  result.create = {
    attempted: devices.length * docsPerPair,
    completed: createMs.length,
    failed: createFailed,
    timeouts: createTimeouts,
    wall_s: wall,
    server_ticks: ticks1 - ticks0,
    latency_ms: createMs,
    split,
    ...memKb(),
  }

  // Stage 2: edits on A seen on B, one in flight per pair, on the pair's documents in turn.
  const editMs = []
  let editFailed = 0
  let editTimeouts = 0
  ticks0 = cpuTicks()
  t0 = now()
  await Promise.all(
    devices.map(async (_d, pair) => {
      const docs = created[pair]
      if (docs.length === 0) return
      let seed = pair * 7919 + 1
      for (let i = 0; i < editsPerPair; i++) {
        const { a, b } = docs[i % docs.length]
        const start = now()
        try {
          seed = (seed * 1103515245 + 12345) % 2147483648
          a.change(doc => {
            const len = String(doc.body).length
            splice(doc, ["body"], seed % (len + 1), 0, i % 2 ? "가" : "a")
          })
          await withTimeout(reached(b, a.heads()), timeoutMs, "edit on B")
          editMs.push(now() - start)
        } catch (e) {
          if (e instanceof TimeoutError) editTimeouts++
          else editFailed++
          noteError(e)
        }
        const spent = now() - start
        if (spent < spacingMs) await sleep(spacingMs - spent)
      }
    }),
  )
  wall = (now() - t0) / 1000
  ticks1 = await quiet()
  result.edit = {
    attempted: devices.reduce((n, _d, pair) => n + (created[pair].length ? editsPerPair : 0), 0),
    completed: editMs.length,
    failed: editFailed,
    timeouts: editTimeouts,
    wall_s: wall,
    server_ticks: ticks1 - ticks0,
    latency_ms: editMs,
    ...memKb(),
  }

  for (const d of devices) {
    await d.a.repo.shutdown()
    await d.b.repo.shutdown()
  }
}

main()
  .then(() => {
    process.stdout.write(JSON.stringify(result) + "\n", () => process.exit(0))
  })
  .catch(e => {
    process.stderr.write(`workload: ${e?.stack ?? e}\n`, () => process.exit(2))
  })

// Edits one Sotong draft through sotong-server as the reference automerge-repo client would,
// step by step: the test writes one JSON command per line on stdin and reads one JSON event
// per line on stdout.
//
// Usage: node edit_draft.mjs --server http://127.0.0.1:PORT --token TOKEN \
//          --doc automerge:ID [--timeout-ms 15000]
//
// First event: {"event":"ready","doc":{...}} once the draft is found, else
//   {"event":"failed","reason":"unavailable"|"timeout"|"unauthorized"|...} and exit 0.
// Commands (each waits at most --timeout-ms, then answers {"event":"timeout","op":...}):
//   {"op":"splice","field":"body","pos":0,"del":0,"text":"..."}
//       edits a text field, then waits until the server holds the change: a sync message
//       from the server whose heads include ours -> {"event":"acked","doc":{...}}, or
//       {"event":"rejected","code":"...","reason":"..."} if the server refuses it.
//   {"op":"put","key":"title","value":42}
//       a raw root assignment, for edits the schema refuses; answers like "splice".
//   {"op":"wait-text","field":"body","includes":"..."}
//       waits for the draft to contain the text (a `change` event) -> {"event":"seen","doc":{...}}
//   {"op":"close"} -> exit 0
// Exit 2 only when the harness itself fails (bad arguments or commands, unexpected errors).

import { createInterface } from "node:readline"
import { parseArgs } from "node:util"
import * as A from "@automerge/automerge"
import { isValidAutomergeUrl } from "@automerge/automerge-repo"
import { connect, Refused, text } from "./connect.mjs"

function emit(event) {
  return new Promise(resolve => process.stdout.write(JSON.stringify(event) + "\n", resolve))
}

function harnessError(message) {
  process.stderr.write(`edit_draft: ${message}\n`, () => process.exit(2))
}

process.on("uncaughtException", err => {
  if (/Unexpected server response: (401|403)/.test(String(err?.message))) {
    emit({ event: "failed", reason: "connect-refused", detail: err.message }).then(() =>
      process.exit(0),
    )
  } else {
    harnessError(err?.stack ?? String(err))
  }
})

/** The draft as the test compares it, including any key the schema does not know. */
function snapshot(doc) {
  return {
    title: text(doc?.title),
    body: text(doc?.body),
    category: text(doc?.category),
    keys: Object.keys(doc ?? {}).sort(),
  }
}

/** Resolves with `check(value)` for the first emitted value it accepts, or "timeout". */
function waitFor(emitter, eventName, check, timeoutMs) {
  return new Promise(resolve => {
    const done = outcome => {
      clearTimeout(timer)
      emitter.off(eventName, listener)
      resolve(outcome)
    }
    const listener = value => {
      const outcome = check(value)
      if (outcome !== undefined) done(outcome)
    }
    const timer = setTimeout(() => done("timeout"), timeoutMs)
    emitter.on(eventName, listener)
  })
}

/** Makes a change, then waits for the server's verdict on it. */
async function changeAndAwaitVerdict(adapter, handle, change, timeoutMs) {
  let ours = null
  const verdict = waitFor(
    adapter,
    "message",
    msg => {
      if (msg.documentId !== handle.documentId || ours === null) return undefined
      if (msg.type === "sotong-rejected") {
        return { event: "rejected", code: msg.code, reason: msg.reason }
      }
      if (msg.type === "sync") {
        const theirs = A.decodeSyncMessage(msg.data).heads
        if (ours.every(h => theirs.includes(h))) {
          return { event: "acked", doc: snapshot(handle.doc()) }
        }
      }
      return undefined
    },
    timeoutMs,
  )
  handle.change(change)
  ours = A.getHeads(handle.doc())
  return verdict
}

async function run(command, adapter, handle, timeoutMs) {
  switch (command.op) {
    case "splice":
      return changeAndAwaitVerdict(
        adapter,
        handle,
        d => A.splice(d, [command.field], command.pos, command.del, command.text),
        timeoutMs,
      )
    case "put":
      return changeAndAwaitVerdict(
        adapter,
        handle,
        d => {
          d[command.key] = command.value
        },
        timeoutMs,
      )
    case "wait-text": {
      const has = doc => text(doc?.[command.field])?.includes(command.includes)
      if (has(handle.doc())) return { event: "seen", doc: snapshot(handle.doc()) }
      return waitFor(
        handle,
        "change",
        ({ doc }) => (has(doc) ? { event: "seen", doc: snapshot(doc) } : undefined),
        timeoutMs,
      )
    }
    default:
      throw new Error(`unknown command ${JSON.stringify(command)}`)
  }
}

async function main() {
  const { values } = parseArgs({
    options: {
      server: { type: "string" },
      token: { type: "string" },
      doc: { type: "string" },
      "timeout-ms": { type: "string", default: "15000" },
    },
    strict: true,
  })
  const { server, token, doc } = values
  const timeoutMs = Number(values["timeout-ms"])
  if (!server || !token || !doc) {
    return harnessError("usage: --server URL --token TOKEN --doc automerge:ID [--timeout-ms N]")
  }
  if (!Number.isInteger(timeoutMs) || timeoutMs <= 0) {
    return harnessError("--timeout-ms must be a positive integer")
  }
  const url = doc.startsWith("automerge:") ? doc : `automerge:${doc}`
  if (!isValidAutomergeUrl(url)) return harnessError(`not an automerge document URL: ${doc}`)

  const deadline = AbortSignal.timeout(timeoutMs)
  let repo, adapter, handle
  try {
    ;({ repo, adapter } = await connect(server, token, deadline))
    handle = await repo.find(url, { signal: deadline })
  } catch (err) {
    const failure =
      err instanceof Refused
        ? err.result
        : deadline.aborted
          ? { reason: "timeout" }
          : /unavailable/.test(String(err?.message))
            ? { reason: "unavailable" }
            : null
    if (failure === null) return harnessError(err?.stack ?? String(err))
    await emit({ event: "failed", reason: failure.reason })
    return process.exit(0)
  }
  await emit({ event: "ready", doc: snapshot(handle.doc()) })

  const lines = createInterface({ input: process.stdin, crlfDelay: Infinity })
  for await (const line of lines) {
    if (line.trim() === "") continue
    const command = JSON.parse(line)
    if (command.op === "close") break
    const outcome = await run(command, adapter, handle, timeoutMs)
    await emit(outcome === "timeout" ? { event: "timeout", op: command.op } : outcome)
  }
  process.exit(0)
}

main().catch(err => harnessError(err?.stack ?? String(err)))

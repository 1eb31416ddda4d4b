// The reference automerge-repo sync server, set up as automerge-repo-sync-server runs it:
// a Repo with the Node WebSocket server adapter, file-system storage, and a share policy that
// announces nothing (peers only get what they ask for). Plain node:http replaces express,
// which only served a static page there.
//
// Usage: node ref_server.mjs --dir DATA_DIR --port-file FILE [--port 0]
// Writes "127.0.0.1:PORT" to FILE once listening.

import fs from "node:fs"
import http from "node:http"
import os from "node:os"
import { parseArgs } from "node:util"
import { WebSocketServer } from "ws"
import { Repo } from "@automerge/automerge-repo"
import { NodeWSServerAdapter } from "@automerge/automerge-repo-network-websocket"
import { NodeFSStorageAdapter } from "@automerge/automerge-repo-storage-nodefs"

const { values } = parseArgs({
  options: {
    dir: { type: "string" },
    "port-file": { type: "string" },
    port: { type: "string", default: "0" },
  },
  strict: true,
})
if (!values.dir || !values["port-file"]) {
  console.error("usage: node ref_server.mjs --dir DATA_DIR --port-file FILE [--port N]")
  process.exit(2)
}
fs.mkdirSync(values.dir, { recursive: true })

const wsServer = new WebSocketServer({ noServer: true })
const repo = new Repo({
  network: [new NodeWSServerAdapter(wsServer)],
  storage: new NodeFSStorageAdapter(values.dir),
  peerId: `storage-server-${os.hostname()}`,
  sharePolicy: async () => false,
})

const server = http.createServer((_req, res) => {
  res.writeHead(200, { "content-type": "text/plain" })
  res.end("automerge-repo sync server\n")
})
server.on("upgrade", (request, socket, head) => {
  wsServer.handleUpgrade(request, socket, head, ws => wsServer.emit("connection", ws, request))
})
server.listen(Number(values.port), "127.0.0.1", () => {
  const { port } = server.address()
  const tmp = `${values["port-file"]}.tmp`
  fs.writeFileSync(tmp, `127.0.0.1:${port}\n`)
  fs.renameSync(tmp, values["port-file"])
  console.log(`listening on ws://127.0.0.1:${port}`)
})

const stop = () => {
  wsServer.close()
  server.close()
  repo.shutdown().finally(() => process.exit(0))
}
process.on("SIGTERM", stop)
process.on("SIGINT", stop)

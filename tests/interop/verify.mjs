// A web-hook receiver for tests/test_interop.py, run by Node: it checks each
// signed call from ntorque with the npm standardwebhooks package and with
// Node's own crypto, answers 200 either way, and serves what it found at
// GET /calls. The environment gives SECRET, the application's "whsec_..."
// signing secret. Prints "listening <port>" once it listens on 127.0.0.1.

import { createHmac, timingSafeEqual } from "node:crypto";
import { createServer } from "node:http";
import { Webhook } from "standardwebhooks";

// -- the README's Node example (tests/test_interop.py checks it is there) --
// body: the request's raw bytes (a Buffer), before any parsing
function signedBy(secret, headers, body) {
  const id = headers["webhook-id"], stamp = headers["webhook-timestamp"];
  const key = Buffer.from(secret.replace(/^whsec_/, ""), "base64");
  const mac = createHmac("sha256", key).update(`${id}.${stamp}.`).update(body).digest();
  const expected = Buffer.from(`v1,${mac.toString("base64")}`);
  const fresh = Math.abs(Date.now() / 1000 - Number(stamp)) <= 300;
  return fresh && headers["webhook-signature"].split(" ").map((given) => Buffer.from(given))
    .some((given) => given.length === expected.length && timingSafeEqual(given, expected));
}
// -- end of the README's Node example --

const secret = process.env.SECRET;
const webhook = new Webhook(secret);
const calls = [];

// "verified", or the name of what the library threw.
function outcome(verify) {
  try {
    verify();
    return "verified";
  } catch (error) {
    return error.name;
  }
}

function record(request, body) {
  const tampered = Buffer.concat([body, Buffer.from("!")]);
  const verify = (payload, options) => () => webhook.verify(payload, request.headers, options);
  calls.push({
    path: request.url,
    headers: request.headers,
    body: body.toString("base64"),
    library: outcome(verify(body, { jsonParse: false })),
    library_parsing_json: outcome(verify(body)), // the package's default
    library_tampered: outcome(verify(tampered, { jsonParse: false })),
    crypto: signedBy(secret, request.headers, body),
    crypto_tampered: signedBy(secret, request.headers, tampered),
  });
}

const server = createServer((request, response) => {
  const chunks = [];
  request.on("data", (chunk) => chunks.push(chunk));
  request.on("end", () => {
    if (request.method === "GET" && request.url === "/calls") {
      response.writeHead(200, { "Content-Type": "application/json" });
      response.end(JSON.stringify(calls));
      return;
    }
    record(request, Buffer.concat(chunks));
    response.writeHead(200);
    response.end("ok");
  });
});

process.on("SIGTERM", () => process.exit(0));
server.listen(0, "127.0.0.1", () => console.log(`listening ${server.address().port}`));

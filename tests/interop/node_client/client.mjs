// Another team's client: JavaScript generated from protos/sluice/v1 (buf + protoc-gen-es),
// talking gRPC over HTTP/2 through connect-node. It submits, watches, drops the stream
// mid-job and resumes with after_seq, cancels a running job, provokes two errors, talks
// to an interactive job line by line through AttachJob and runs a job with test cases.
// Usage: node client.mjs HOST:PORT API_KEY [CA_FILE]; with CA_FILE it speaks TLS and trusts
// that CA. Prints one JSON object with what it saw.

import { readFileSync } from "node:fs";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { ExecutionService } from "./gen/sluice/v1/execution_service_pb.js";
import { Comparison, JobState, Verdict } from "./gen/sluice/v1/job_pb.js";

const [target, apiKey, caFile] = process.argv.slice(2);
const transport = createGrpcTransport(
  caFile
    ? { baseUrl: `https://${target}`, nodeOptions: { ca: readFileSync(caFile) } }
    : { baseUrl: `http://${target}` },
);
const client = createClient(ExecutionService, transport);
const auth = { headers: { authorization: `Bearer ${apiKey}` } };
const text = (bytes) => new TextDecoder().decode(bytes);
const FINAL = new Set([JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.DEAD_LETTERED]);
const isFinal = (event) => event.event.case === "stateChange" && FINAL.has(event.event.value.state);

function describe(event) {
  const { case: kind, value } = event.event;
  if (kind === "stateChange") return { seq: Number(event.seq), state: JobState[value.state] };
  if (kind === "output") return { seq: Number(event.seq), output: text(value.data) };
  if (kind === "testCaseResult") {
    return { seq: Number(event.seq), testCase: value.name, verdict: Verdict[value.verdict] };
  }
  return { seq: Number(event.seq), result: value.verdict, exitCode: value.exitCode };
}

async function submit(source, fields = {}) {
  const response = await client.submitJob(
    { language: "python", files: [{ name: "main.py", content: new TextEncoder().encode(source) }], ...fields },
    auth,
  );
  return response.job.id;
}

// Requests for a client stream, written as the conversation goes; end() half-closes it.
function requestQueue() {
  const queued = [];
  let wake = null;
  let ended = false;
  const poke = () => {
    if (wake) wake();
    wake = null;
  };
  return {
    push(request) {
      queued.push(request);
      poke();
    },
    end() {
      ended = true;
      poke();
    },
    async *[Symbol.asyncIterator]() {
      for (;;) {
        while (queued.length) yield queued.shift();
        if (ended) return;
        await new Promise((resolve) => {
          wake = resolve;
        });
      }
    },
  };
}

async function errorOf(call) {
  try {
    await call();
    return null;
  } catch (error) {
    const failure = ConnectError.from(error);
    return { code: Code[failure.code], message: failure.rawMessage };
  }
}

const languages = (await client.listLanguages({}, auth)).languages.map((l) => l.id);

// Watch until two output chunks arrived, drop the stream, resume after the last seq seen.
const streamedId = await submit(
  "import time\nfor i in range(6):\n    print('line', i, flush=True)\n    time.sleep(0.3)\n",
);
const firstPart = [];
for await (const event of client.watchJob({ jobId: streamedId, afterSeq: 0n }, auth)) {
  firstPart.push(describe(event));
  if (firstPart.filter((e) => e.output !== undefined).length >= 2 || isFinal(event)) break;
}
const resumed = [];
const after = BigInt(firstPart[firstPart.length - 1].seq);
for await (const event of client.watchJob({ jobId: streamedId, afterSeq: after }, auth)) {
  resumed.push(describe(event));
}
const streamedJob = await client.getJob({ jobId: streamedId }, auth);

// Cancel a job once it runs.
const sleeperId = await submit("import time\nprint('sleeping', flush=True)\ntime.sleep(60)\n");
const cancelEvents = [];
let cancelRequestedAtMs = null;
for await (const event of client.watchJob({ jobId: sleeperId, afterSeq: 0n }, auth)) {
  cancelEvents.push(describe(event));
  if (event.event.case === "output" && cancelRequestedAtMs === null) {
    cancelRequestedAtMs = Date.now();
    await client.cancelJob({ jobId: sleeperId }, auth);
  }
}
const cancelledAfterMs = Date.now() - cancelRequestedAtMs;
const sleeperJob = await client.getJob({ jobId: sleeperId }, auth);

// An interactive job: each line's answer is read before the next line is sent.
const interactiveId = await submit(
  "import sys\nfor line in sys.stdin:\n    print(line.strip().upper(), flush=True)\nprint('eof', flush=True)\n",
  { interactive: true },
);
const requests = requestQueue();
requests.push({ jobId: interactiveId, afterSeq: 0n });
const lines = ["hello", "world"];
const answers = [];
let pending = "";
let next = 0;
requests.push({ stdin: new TextEncoder().encode(`${lines[next]}\n`) });
for await (const event of client.attachJob(requests, auth)) {
  if (event.event.case !== "output") continue;
  pending += text(event.event.value.data);
  while (pending.includes("\n")) {
    const cut = pending.indexOf("\n");
    answers.push(pending.slice(0, cut));
    pending = pending.slice(cut + 1);
    next += 1;
    if (next < lines.length) requests.push({ stdin: new TextEncoder().encode(`${lines[next]}\n`) });
    else if (next === lines.length) {
      requests.push({ closeStdin: true });
      requests.end();
    }
  }
}
const interactiveJob = await client.getJob({ jobId: interactiveId }, auth);

// Test cases: one program, three inputs, one expectation wrong.
const casesId = await submit("print(int(input()) * 2)\n", {
  testCases: [
    { name: "two", stdin: new TextEncoder().encode("2\n"), expectedStdout: new TextEncoder().encode("4\n") },
    { name: "three", stdin: new TextEncoder().encode("3\n"), expectedStdout: new TextEncoder().encode("7") },
    { name: "ten", stdin: new TextEncoder().encode("10\n"), expectedStdout: new TextEncoder().encode("20") },
  ],
  comparison: Comparison.IGNORE_TRAILING_WHITESPACE,
});
const caseEvents = [];
for await (const event of client.watchJob({ jobId: casesId, afterSeq: 0n }, auth)) {
  if (event.event.case === "testCaseResult") caseEvents.push(describe(event));
}
const casesJob = await client.getJob({ jobId: casesId }, auth);

const unknownLanguage = await errorOf(() =>
  client.submitJob({ language: "cobol-85", files: [{ name: "a", content: new Uint8Array(1) }] }, auth),
);
const badKey = await errorOf(() =>
  client.listLanguages({}, { headers: { authorization: "Bearer not-a-key" } }),
);

console.log(JSON.stringify({
  languages,
  streamed: {
    id: streamedId,
    firstPart,
    resumed,
    state: JobState[streamedJob.state],
    stdout: text(streamedJob.result.stdout),
  },
  cancelled: { id: sleeperId, events: cancelEvents, state: JobState[sleeperJob.state], cancelledAfterMs },
  errors: { unknownLanguage, badKey },
  interactive: { answers, state: JobState[interactiveJob.state], stdout: text(interactiveJob.result.stdout) },
  cases: {
    events: caseEvents,
    verdict: Verdict[casesJob.result.verdict],
    results: casesJob.result.testResults.map((c) => [c.name, Verdict[c.verdict], text(c.stdout)]),
  },
}));
// The transport keeps its HTTP/2 session open for reuse; this client is done with it.
process.exit(0);

// Reference figure for bench/bench_processor.py: Node.js (V8) running the same
// process(batch) on the same JSON batch, JSON string in and out, like the stage.
// Usage: node bench/node_processor.js <code file> <batch file> <iterations>
// Prints {"median_ms": ..., "events": ...} on stdout.
"use strict";
const fs = require("fs");
const [codeFile, batchFile, iterArg] = process.argv.slice(2);
const code = fs.readFileSync(codeFile, "utf8").replace(/^([ \t]*)export\s/gm, "$1");
const userProcess = new Function(code + "\nreturn process;")();
const text = fs.readFileSync(batchFile, "utf8");
const iterations = Number(iterArg || 40);
const run = () => JSON.stringify(userProcess(JSON.parse(text)));
for (let i = 0; i < 10; i++) run();            // let the JIT settle
const times = [];
for (let i = 0; i < iterations; i++) {
  const t = process.hrtime.bigint();
  run();
  times.push(Number(process.hrtime.bigint() - t) / 1e6);
}
const events = JSON.parse(run()).length;
times.sort((a, b) => a - b);
console.log(JSON.stringify({ median_ms: times[Math.floor(times.length / 2)], events }));

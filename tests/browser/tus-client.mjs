// Uploads a file to the app's /api/uploads with tus-js-client, unmodified, as a
// third-party client would: `node tus-client.mjs <app url> <token> <file> <chunk bytes>`.
// Prints one JSON line: the upload's URL and the Job-Id the last PATCH answered with.
import { readFileSync } from "node:fs";
import { basename } from "node:path";
import * as tus from "tus-js-client";

const [base, token, file, chunkSize] = process.argv.slice(2);
const data = readFileSync(file);
let jobId = null;

await new Promise((resolve, reject) => {
  const upload = new tus.Upload(data, {
    endpoint: `${base}/api/uploads`,
    headers: { Authorization: `Bearer ${token}` },
    metadata: { filename: basename(file), filetype: "video/mp4" },
    chunkSize: Number(chunkSize),
    retryDelays: [100, 500, 1000],
    onAfterResponse(_req, res) {
      jobId = res.getHeader("Job-Id") || jobId;
    },
    onError: reject,
    onSuccess: () => resolve(upload.url),
  });
  upload.start();
}).then((url) => console.log(JSON.stringify({ url, jobId })));

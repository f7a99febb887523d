// Import the OpenAPI document as Postman does (openapi-to-postmanv2) and
// print what the import reports, as JSON: {valid, result, reason, requests}.
// Usage: node check-openapi-import.js ../http_server/openapi.json
"use strict";
const fs = require("fs");
const Converter = require("openapi-to-postmanv2");

const input = { type: "string", data: fs.readFileSync(process.argv[2], "utf8") };
const validation = Converter.validate(input);
Converter.convertV2(input, { folderStrategy: "Paths" }, (error, conversion) => {
  const requests = [];
  const walk = (items) => (items || []).forEach((item) => (item.item ? walk(item.item) : requests.push(item.name)));
  if (conversion && conversion.output && conversion.output[0]) walk(conversion.output[0].data.item);
  console.log(JSON.stringify({
    valid: validation.result,
    validationReason: validation.reason || null,
    result: Boolean(conversion && conversion.result),
    reason: error ? String(error) : (conversion && conversion.reason) || null,
    requests,
  }));
});

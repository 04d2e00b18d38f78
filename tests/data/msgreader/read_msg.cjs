// An Outlook .msg as @kenjiuno/msgreader reads it, as JSON on stdout: the fields the
// import tests compare with (tests/mailsources/test_import_outlook.py). Attachments'
// content in base64; the .msg's path is the only argument.
"use strict";
const fs = require("fs");
const MsgReader = require("@kenjiuno/msgreader").default;

const reader = new MsgReader(fs.readFileSync(process.argv[2]));
const info = reader.getFileData();
if (info.error) {
  console.error(info.error);
  process.exit(1);
}
const html = info.html ? Buffer.from(info.html).toString("utf8") : info.bodyHtml;
console.log(
  JSON.stringify({
    subject: info.subject ?? "",
    senderName: info.senderName ?? "",
    senderEmail: info.senderSmtpAddress || info.senderEmail || "",
    headers: info.headers ?? "",
    body: info.body ?? "",
    html: html ?? "",
    messageId: info.messageId ?? "",
    clientSubmitTime: info.clientSubmitTime ?? "",
    recipients: (info.recipients ?? []).map((r) => ({
      name: r.name ?? "",
      email: r.smtpAddress || r.email || "",
      kind: r.recipType ?? "",
    })),
    attachments: (info.attachments ?? []).map((a) => {
      const got = reader.getAttachment(a);
      return { fileName: got.fileName, content: Buffer.from(got.content).toString("base64") };
    }),
  }),
);

/**
 * A small AMI server for unit tests only: it speaks the real wire format (banner, CRLF packets,
 * ActionID echoed, event lists) with what the tests script, so the client and gateway can be
 * driven through reconnects, silence and hostile bytes. The real Asterisk is in test/e2e/ami.test.ts.
 */
import { createServer, type AddressInfo, type Server, type Socket } from "node:net";

export type Fields = Record<string, string>;

export function packet(fields: Fields | [string, string][]): string {
  const entries = Array.isArray(fields) ? fields : Object.entries(fields);
  return entries.map(([k, v]) => `${k}: ${v}\r\n`).join("") + "\r\n";
}

export interface Mailbox {
  urgent: number;
  new: number;
  old: number;
  details: Fields[];
}

export class FakeAmi {
  readonly server: Server;
  readonly sockets = new Set<Socket>();
  /** Every action received, as parsed fields (the Login's secret included: tests check it arrived). */
  readonly actions: Fields[] = [];
  readonly mailboxes = new Map<string, Mailbox>();
  secret = "s3cret";
  logins = 0;
  /** Actions not answered at all (a hung server). */
  silent = new Set<string>();

  private constructor(server: Server) {
    this.server = server;
  }

  static async start(): Promise<FakeAmi> {
    const server = createServer();
    const ami = new FakeAmi(server);
    server.on("connection", (s) => ami.accept(s));
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    return ami;
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  mailbox(key: string): Mailbox {
    let m = this.mailboxes.get(key);
    if (!m) this.mailboxes.set(key, (m = { urgent: 0, new: 0, old: 0, details: [] }));
    return m;
  }

  /** An event to every logged-in connection. */
  event(fields: Fields): void {
    for (const s of this.sockets) s.write(packet({ Event: fields.Event ?? "?", Privilege: "call,all", ...fields }));
  }

  dropAll(): void {
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
  }

  async close(): Promise<void> {
    this.dropAll();
    await new Promise((r) => this.server.close(r));
  }

  private accept(socket: Socket): void {
    socket.write("Asterisk Call Manager/11.0.0\r\n");
    let buf = "";
    let loggedIn = false;
    socket.on("error", () => undefined);
    socket.on("data", (d) => {
      buf += d.toString("utf8");
      for (;;) {
        const end = buf.indexOf("\r\n\r\n");
        if (end < 0) return;
        const fields: Fields = {};
        for (const line of buf.slice(0, end).split("\r\n")) {
          const i = line.indexOf(":");
          if (i > 0) fields[line.slice(0, i)] = line.slice(i + 1).trim();
        }
        buf = buf.slice(end + 4);
        this.actions.push(fields);
        const id = fields.ActionID ?? "";
        const reply = (f: Fields) => socket.write(packet({ Response: "Success", ActionID: id, ...f }));
        if (this.silent.has(fields.Action ?? "")) continue;
        if (fields.Action === "Login") {
          if (fields.Username !== "bridge" || fields.Secret !== this.secret) {
            socket.write(packet({ Response: "Error", ActionID: id, Message: "Authentication failed" }));
            socket.end();
            return;
          }
          loggedIn = true;
          this.logins++;
          this.sockets.add(socket);
          socket.on("close", () => this.sockets.delete(socket));
          reply({ Message: "Authentication accepted" });
          continue;
        }
        if (!loggedIn) {
          socket.write(packet({ Response: "Error", ActionID: id, Message: "Permission denied" }));
          continue;
        }
        switch (fields.Action) {
          case "Ping":
            reply({ Ping: "Pong", Timestamp: "1.0" });
            break;
          case "MailboxCount": {
            const m = this.mailbox(fields.Mailbox ?? "");
            reply({ Message: "Mailbox Message Count", Mailbox: fields.Mailbox ?? "", UrgMessages: String(m.urgent), NewMessages: String(m.new), OldMessages: String(m.old) });
            break;
          }
          case "VoicemailBoxSummary": {
            const m = this.mailbox(`${fields.Mailbox}@${fields.Context}`);
            socket.write(packet({ Response: "Success", ActionID: id, EventList: "start", Message: "Voicemail box detail will follow" }));
            for (const d of m.details) socket.write(packet({ Event: "VoicemailBoxDetail", ActionID: id, ...d }));
            socket.write(packet({ Event: "VoicemailBoxDetailComplete", ActionID: id, EventList: "Complete", ListItems: String(m.details.length) }));
            break;
          }
          case "VoicemailMove":
          case "VoicemailRemove": {
            // As app_voicemail: the message is named by mailbox, context, folder and msg_id.
            const m = this.mailbox(`${fields.Mailbox}@${fields.Context}`);
            const i = m.details.findIndex((d) => d.ID === fields.ID && d.Folder === fields.Folder);
            if (i < 0 || (fields.Action === "VoicemailMove" && !fields.ToFolder)) {
              socket.write(packet({ Response: "Error", ActionID: id, Message: "Message does not exist" }));
              break;
            }
            const [d] = m.details.splice(i, 1);
            const from = d!.Folder === "Urgent" ? "urgent" : d!.Folder === "INBOX" ? "new" : "old";
            m[from] = Math.max(0, m[from] - 1);
            if (fields.Action === "VoicemailMove") {
              m.details.push({ ...d!, Folder: fields.ToFolder! });
              if (fields.ToFolder === "Old") m.old++;
            }
            reply({ Message: fields.Action === "VoicemailMove" ? "Message moved successfully" : "Message removed successfully" });
            break;
          }
          case "Originate":
            reply({ Message: "Originate successfully queued" });
            break;
          default:
            socket.write(packet({ Response: "Error", ActionID: id, Message: "Invalid/unknown command" }));
        }
      }
    });
  }
}

export const until = async (what: string, cond: () => boolean, timeoutMs = 5_000): Promise<void> => {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
};

/** matrix-appservice-voicemail: generate-registration, start, validate-config, migrate-store. */
import yargs from "yargs";
import { hideBin } from "yargs/helpers";
import { Logger } from "matrix-appservice-bridge";
import { ConfigError, configWarnings, loadConfig } from "./config/load.js";
import { writeRegistration } from "./config/registration.js";
import type { BridgeConfig } from "./config/types.js";
import { VoicemailBridge } from "./app/voicemailBridge.js";
import { formatReport, migrateStore } from "./store/migrateStore.js";

function load(path: string): BridgeConfig {
  try {
    return loadConfig(path);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${path}: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
}

function configureLogging(config: BridgeConfig): void {
  Logger.configure({
    console: config.logging.level,
    ...(config.logging.file ? { files: { [config.logging.file]: config.logging.level } } : {}),
  } as Parameters<typeof Logger.configure>[0]);
}

async function start(configPath: string, registrationPath: string): Promise<void> {
  const config = load(configPath);
  configureLogging(config);
  const log = new Logger("main");
  for (const warning of configWarnings(config)) log.warn(`config: ${warning}`);
  const bridge = new VoicemailBridge(config, registrationPath);
  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info(`${signal}: shutting down`);
    bridge.stop().finally(() => process.exit(0));
  };
  process.on("SIGTERM", () => shutdown("SIGTERM"));
  process.on("SIGINT", () => shutdown("SIGINT"));
  process.on("unhandledRejection", (reason) => log.error(`unhandled rejection: ${String((reason as Error)?.message ?? reason)}`));
  try {
    await bridge.start();
  } catch (err) {
    log.error(`could not start: ${(err as Error).message}`);
    await bridge.stop().catch(() => undefined);
    process.exit(1);
  }
}

const configOption = { alias: "c", type: "string", demandOption: true, describe: "the bridge's config.yaml" } as const;
const registrationOption = { alias: "f", type: "string", demandOption: true, describe: "the appservice registration file" } as const;

await yargs(hideBin(process.argv))
  .scriptName("matrix-appservice-voicemail")
  .strict()
  .demandCommand(1, "Say what to do: generate-registration, start, validate-config or migrate-store.")
  .command(
    "generate-registration",
    "write the appservice registration for the homeserver (keeps existing tokens)",
    (y) =>
      y
        .option("config", configOption)
        .option("file", registrationOption)
        .option("url", { alias: "u", type: "string", describe: "how the homeserver reaches the bridge (default: appservice.url)" })
        .option("regenerate-tokens", { type: "boolean", default: false, describe: "replace the tokens (the homeserver must load the new file)" }),
    (argv) => {
      const config = load(argv.config);
      const { registration, keptTokens } = writeRegistration(config, argv.file, {
        ...(argv.url ? { url: argv.url } : {}),
        regenerateTokens: argv["regenerate-tokens"],
      });
      process.stdout.write(
        `Wrote ${argv.file} (${keptTokens ? "kept the existing tokens" : "new tokens"}); the homeserver reaches the bridge at ${registration.url}.\n` +
          `Add it to app_service_config_files in homeserver.yaml and restart the homeserver.\n`,
      );
    },
  )
  .command(
    "start",
    "run the bridge",
    (y) => y.option("config", configOption).option("file", registrationOption),
    (argv) => start(argv.config, argv.file),
  )
  .command(
    "validate-config",
    "check a config file against the schema",
    (y) => y.option("config", configOption),
    (argv) => {
      const config = load(argv.config);
      const warnings = configWarnings(config);
      for (const warning of warnings) process.stderr.write(`${argv.config}: warning: ${warning}\n`);
      process.stdout.write(`${argv.config} is valid: ${config.systems.length} voice mail system(s)${warnings.length ? `, ${warnings.length} warning(s)` : ""}.\n`);
    },
  )
  .command(
    "migrate-store",
    "copy everything from one store to another (stop the bridge first)",
    (y) =>
      y
        .option("from", { type: "string", demandOption: true, describe: "the store to copy, as in database.uri (nedb:./data)" })
        .option("to", { type: "string", demandOption: true, describe: "the store to fill, as in database.uri (postgres://user:password@host/db)" })
        .option("force", { type: "boolean", default: false, describe: "replace what the target holds (else a target that is not empty is refused)" }),
    async (argv) => {
      try {
        const report = await migrateStore(argv.from, argv.to, { force: argv.force });
        process.stdout.write(`${formatReport(report, argv.from, argv.to).join("\n")}\n`);
      } catch (err) {
        process.stderr.write(`migrate-store: ${(err as Error).message}\n`);
        process.exit(1);
      }
    },
  )
  .help()
  .parseAsync();

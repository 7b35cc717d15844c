// Node built-ins the sidecar takes with require(), not import: an ESM import reads every export, lazy ones included.
import { createRequire } from 'node:module';
import type * as Crypto from 'node:crypto';
import type * as Fs from 'node:fs';
import type * as Http from 'node:http';
import type * as Util from 'node:util';

/*
 * Importing a built-in as ESM builds its namespace from all of its exports, which runs every lazy getter. node:http's
 * WebSocket, CloseEvent and MessageEvent then load Node's bundled undici and web streams; node:fs, node:util and
 * node:crypto pull in readline, worker_threads and WebCrypto. The sidecar uses none of them. In a bare script
 * `import 'node:http'` costs 13 MB of RSS more than require('node:http'); in the sidecar, which loads much of it
 * anyway, the idle heap goes from 19.5 to 18.3 MB and RSS down by about 3 MB. Type-only imports of these modules
 * stay as they are: they are erased.
 */
const require = createRequire(import.meta.url);

export const nodeCrypto = require('node:crypto') as typeof Crypto;
export const nodeFs = require('node:fs') as typeof Fs;
export const nodeHttp = require('node:http') as typeof Http;
export const nodeUtil = require('node:util') as typeof Util;

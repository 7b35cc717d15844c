// prom-client's Registry, Counter, Gauge and Histogram without its index (which loads cluster, Pushgateway and OpenTelemetry).
import { createRequire } from 'node:module';
import type * as Prom from 'prom-client';

/*
 * `import { Counter } from 'prom-client'` runs prom-client's index.js, which requires every part of the library:
 * AggregatorRegistry (node:cluster, child_process), Pushgateway (http, https), Summary (tdigest) and the default
 * metrics (@opentelemetry/api): ~17 MiB of an idle sidecar. These are the same classes from the same files
 * (prom-client has no "exports" map, so its lib/ files are public paths), so objects mix freely with code that
 * imports the index (tests, the control plane).
 */
const require = createRequire(import.meta.url);

export const Registry = require('prom-client/lib/registry.js') as typeof Prom.Registry;
export type Registry = Prom.Registry;
export const Counter = require('prom-client/lib/counter.js') as typeof Prom.Counter;
export type Counter<T extends string = string> = Prom.Counter<T>;
export const Gauge = require('prom-client/lib/gauge.js') as typeof Prom.Gauge;
export type Gauge<T extends string = string> = Prom.Gauge<T>;
export const Histogram = require('prom-client/lib/histogram.js') as typeof Prom.Histogram;
export type Histogram<T extends string = string> = Prom.Histogram<T>;

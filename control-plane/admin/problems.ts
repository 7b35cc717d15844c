// Config problems an operator must see, as they appear and as they clear: in the log and as Prometheus gauges.
import { Counter, Gauge, type Registry as MetricsRegistry } from 'prom-client';
import type { ServiceKey } from '../registry/registry.ts';
import type { TranslationProblem } from '../translate/build.ts';
import { logger } from '../log.ts';

const log = logger('problems');

/** What a problem is known by between two reports: its Service and text. */
function keyOf(p: TranslationProblem): string {
  return `${p.service}\u0000${p.message}`;
}

/**
 * Logs translation problems (an unknown annotation value, a duplicate domain, a route to a missing Service) when they
 * first appear and when they clear, after every published change, not only at start-up; and exports
 * `skein_translation_problems` (Services with a problem now) and `skein_registry_rejected` (problems of a registry
 * source version that was refused and is not being served).
 */
export class ConfigProblems {
  private reported = new Map<string, TranslationProblem>();
  private readonly services: Gauge;
  private readonly registryProblems: Counter<'code'>;

  constructor(metrics: MetricsRegistry, rejected: () => number) {
    this.services = new Gauge({
      name: 'skein_translation_problems',
      help: 'Problems in the translation of Services (each also logged when it appears and when it clears)',
      registers: [metrics],
    });
    this.registryProblems = new Counter({
      name: 'skein_registry_problems_total',
      help: 'Problems the registry survived (a rejected file or object, a failed list or watch), by code; each is logged',
      labelNames: ['code'],
      registers: [metrics],
    });
    new Gauge({
      name: 'skein_registry_rejected',
      help: 'Problems of the registry version that was refused (0: the version on disk is the one served)',
      registers: [metrics],
      collect() {
        this.set(rejected());
      },
    });
  }

  /** A problem the registry reported (it keeps serving its last good state); the caller logs it. */
  registryProblem(code: string): void {
    this.registryProblems.labels(code).inc();
  }

  /** The problems now; logs the difference from the last call. */
  update(now: ReadonlyMap<ServiceKey, readonly TranslationProblem[]>): void {
    const next = new Map<string, TranslationProblem>();
    for (const list of now.values()) for (const p of list) next.set(keyOf(p), p);
    for (const [key, p] of next) {
      if (!this.reported.has(key)) log.warn('translation problem', { service: p.service, code: p.code, problem: p.message });
    }
    for (const [key, p] of this.reported) {
      if (!next.has(key)) log.info('translation problem cleared', { service: p.service, code: p.code, problem: p.message });
    }
    this.reported = next;
    this.services.set(next.size);
  }
}

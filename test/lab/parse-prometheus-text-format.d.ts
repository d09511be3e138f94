/** The npm parser of the Prometheus text format ships no types: what the tests read of its result. */
declare module "parse-prometheus-text-format" {
  interface MetricFamily {
    name: string;
    help: string;
    type: string;
    metrics: { labels?: Record<string, string>; value: string; timestamp_ms?: string }[];
  }
  export default function parsePrometheusTextFormat(text: string): MetricFamily[];
}

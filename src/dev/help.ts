/** `vision-trainer dev --help`, apart from the stack itself so that the CLI's start stays light. */
export function devHelp(): string {
  return [
    'Starts, on 127.0.0.1, a SeaweedFS S3 server (bucket vision-platform, fresh credentials) and a',
    'callback receiver that checks every callback against the API schemas and the token and prints',
    "one line per callback. On the receiver's port it serves a live dashboard of every job it hears",
    'from: progress and ETA, loss and metric curves, the latest validation, checkpoints, test-run',
    'images and Grad-CAM overlays, exports, and the callback log. Prints the environment variables',
    'a job needs; Ctrl-C (or SIGTERM) stops everything.',
  ].join('\n');
}

/** `vision-trainer <mode> --help`: every variable of the mode, its meaning and default. */
import { type Mode, variablesFor } from './variables.js';

export const MODE_SUMMARY: Record<Mode, string> = {
  train: 'Download the dataset, train, report every epoch and upload checkpoints.',
  infer: 'Run a test run (metrics on a labelled split) or an inference job (predictions), with visualisations and XAI.',
  export: 'Export a checkpoint (ONNX and more), validate it and package it with runtime code.',
};

export function helpText(mode: Mode): string {
  return `vision-trainer ${mode}: ${MODE_SUMMARY[mode]}\n\n${variablesHelp(mode)}`;
}

/** The variables part of the help: what `vision-trainer <mode> --help` prints below its options. */
export function variablesHelp(mode: Mode): string {
  const lines = ['Configuration is read from environment variables:'];
  let group = '';
  const seen = new Set<string>();
  for (const v of variablesFor(mode)) {
    if (seen.has(v.env[0]!)) continue;
    seen.add(v.env[0]!);
    if (v.group !== group) {
      group = v.group;
      lines.push('', `${group}:`);
    }
    const names = v.env.join(' | ');
    const tail = [v.required ? 'required' : v.defaultText ? `default: ${v.defaultText}` : 'optional', v.secret ? 'secret' : ''].filter(Boolean).join(', ');
    lines.push(`  ${names}`, `      ${v.help} (${tail})`);
  }
  lines.push(
    '',
    'Exit codes: 0 ok, 2 configuration (and command-line usage), 3 dataset, 4 storage, 5 framework error, 6 completion callback',
    '            undeliverable, 7 time limit, 8 out of memory, 9 unsafe checkpoint refused, 10 storage credentials refused,',
    '            143 terminated (SIGTERM). See README "Exit codes".',
  );
  return lines.join('\n');
}

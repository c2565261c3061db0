import type { RowQuery } from './api/types';
import { flagNumber, shellQuote } from './cli';

/** `modelfactory datanet show <id>`: a Datanet's card on the hub. */
export function datanetShowCommand(id: string): string {
  return `modelfactory datanet show ${shellQuote(id)}`;
}

/** `modelfactory datanet pull <id>`. */
export function datanetPullCommand(id: string): string {
  return `modelfactory datanet pull ${shellQuote(id)}`;
}

/** `modelfactory datanet import <file> --name <name>`. */
export function datanetImportCommand(file: string, name: string): string {
  return `modelfactory datanet import ${shellQuote(file.trim() || '<file>')} --name ${shellQuote(name.trim() || '<name>')}`;
}

/** `modelfactory dataset rows <id> --search … --status …`: the curation table's rows from a terminal. */
export function datasetRowsCommand(id: string, query: RowQuery): string {
  const parts = ['modelfactory dataset rows', shellQuote(id)];
  if (query.search) parts.push('--search', shellQuote(query.search));
  if (query.contributor) parts.push('--contributor', shellQuote(query.contributor));
  if (query.status) parts.push('--status', query.status);
  if (query.tag) parts.push('--tag', shellQuote(query.tag));
  if (query.min_len !== undefined) parts.push('--min-len', flagNumber(query.min_len));
  if (query.max_len !== undefined) parts.push('--max-len', flagNumber(query.max_len));
  if (query.flag) parts.push('--flag', query.flag);
  if (query.sort && query.sort !== 'position') parts.push('--sort', query.sort.replace(/_/g, '-'));
  if (query.desc) parts.push('--desc');
  return parts.join(' ');
}

export function datasetStatsCommand(id: string): string {
  return `modelfactory dataset stats ${shellQuote(id)}`;
}

/** `modelfactory dataset show <name>`: a dataset's rows with their contributions. */
export function datasetShowCommand(name: string): string {
  return `modelfactory dataset show ${shellQuote(name)}`;
}

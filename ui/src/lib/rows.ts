import { isMessages, type Content, type LabelStatus, type RowFlag, type RowSort, type StatusFilter } from './api/types';

/** `0x1234567890abcdef…` → `0x1234…cdef`; short strings stay as they are. */
export function shortAddress(address: string): string {
  return address.length > 13 ? `${address.slice(0, 6)}…${address.slice(-4)}` : address;
}

/** The question of a row: its instruction (with the input, when there is one), or the first user turn. */
export function contentPrompt(content: Content): string {
  if (isMessages(content)) {
    const user = content.messages.find((m) => m.role === 'user') ?? content.messages.find((m) => m.role !== 'system');
    return user?.content ?? '';
  }
  return content.input ? `${content.instruction}\n${content.input}` : content.instruction;
}

/** The answer of a row: its output, or the first assistant turn after the first user turn. */
export function contentAnswer(content: Content): string {
  if (isMessages(content)) {
    const userAt = content.messages.findIndex((m) => m.role === 'user');
    const answer = content.messages.slice(userAt + 1).find((m) => m.role === 'assistant');
    return answer?.content ?? '';
  }
  return content.output;
}

/** Every text of a row, for searching. */
export function contentText(content: Content): string {
  if (isMessages(content)) return content.messages.map((m) => m.content).join('\n');
  return [content.instruction, content.input, content.output].filter((t) => t).join('\n');
}

/** Characters of a row's text, as the studio counts them. */
export function contentLength(content: Content): number {
  return [...contentText(content).replace(/\n/g, '')].length;
}

/** One line, at most `max` characters. */
export function oneLine(text: string, max = 160): string {
  const line = text.replace(/\s+/g, ' ').trim();
  return line.length > max ? `${line.slice(0, max - 1)}…` : line;
}

export const STATUS_LABEL: Record<StatusFilter, string> = { accepted: 'Accepted', rejected: 'Rejected', unlabeled: 'Unlabeled' };
export const FLAG_LABEL: Record<RowFlag, string> = { pii: 'Personal data', duplicate: 'Duplicate', edited: 'Edited' };
export const SORT_LABEL: Record<RowSort, string> = {
  position: 'Position',
  length: 'Length',
  rating: 'Rating',
  contributor: 'Contributor',
  created_at: 'Date contributed',
};

export function statusLabel(status: LabelStatus | null): string {
  return status ? STATUS_LABEL[status] : 'Unlabeled';
}

/** 4 → "★★★★☆"; null → "". */
export function ratingStars(rating: number | null): string {
  if (rating === null) return '';
  const n = Math.max(0, Math.min(5, Math.round(rating)));
  return '★'.repeat(n) + '☆'.repeat(5 - n);
}

/** A tag as stored: trimmed, inner spaces as dashes, lower case. '' when nothing is left. */
export function normalizeTag(tag: string): string {
  return tag.trim().toLowerCase().replace(/\s+/g, '-');
}

/** `owner/name` ↔ the Datasets screen's address for curating it. */
export function curateSub(id: string): string {
  return `curate/${id
    .split('/')
    .map((p) => encodeURIComponent(p))
    .join('/')}`;
}

export function datasetSub(name: string): string {
  return `named/${encodeURIComponent(name)}`;
}

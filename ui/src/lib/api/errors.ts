import type { ApiError } from './types';

/**
 * The exception every API call throws. It carries the `ApiError` shape from docs/api.md
 * (`error`, `hint`) so screens can show both, whichever transport produced it.
 */
export class ApiException extends Error implements ApiError {
  readonly error: string;
  readonly hint: string | null;
  /** HTTP status when the HTTP transport produced it; null otherwise. */
  readonly status: number | null;

  constructor(error: string, hint: string | null = null, status: number | null = null) {
    super(error);
    this.name = 'ApiException';
    this.error = error;
    this.hint = hint;
    this.status = status;
  }
}

export function isApiErrorShape(value: unknown): value is ApiError {
  if (typeof value !== 'object' || value === null) return false;
  const v = value as Record<string, unknown>;
  return typeof v.error === 'string' && (v.hint === undefined || v.hint === null || typeof v.hint === 'string');
}

/** Turns anything thrown or rejected into an ApiException. */
export function toApiException(value: unknown, status: number | null = null): ApiException {
  if (value instanceof ApiException) return value;
  if (isApiErrorShape(value)) return new ApiException(value.error, value.hint ?? null, status);
  if (value instanceof Error) return new ApiException(value.message, null, status);
  if (typeof value === 'string') return new ApiException(value, null, status);
  return new ApiException('Unexpected error', null, status);
}

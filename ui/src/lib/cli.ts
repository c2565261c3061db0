/** Quotes one argument for a POSIX shell, only when it needs it. */
export function shellQuote(arg: string): string {
  if (arg !== '' && /^[A-Za-z0-9_./:@=+,%-]+$/.test(arg)) return arg;
  return `'${arg.replace(/'/g, `'\\''`)}'`;
}

/** `modelfactory models add <source>`, quoted for a shell. */
export function addModelCommand(source: string): string {
  return `modelfactory models add ${shellQuote(source.trim())}`;
}

export function removeModelCommand(id: string): string {
  return `modelfactory models remove ${shellQuote(id)}`;
}

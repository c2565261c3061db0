import { describe, expect, it } from 'vitest';
import { ApiException } from '../api/errors';
import { FakeTransport, verifyReport } from '../testing/fake-transport';
import { VerifyManager, parseContributions, verifyCommand } from './verify.svelte';

describe('VerifyManager', () => {
  it('reads contribution ids one per line, without blanks or repeats', () => {
    expect(parseContributions('')).toEqual([]);
    expect(parseContributions(' aa \n\nbb\r\naa, cc ')).toEqual(['aa', 'bb', 'cc']);
  });

  it('writes the CLI command', () => {
    expect(verifyCommand({ target: 'me/adapter', contributions: ['aa', 'bb'], skip_chain: true })).toBe(
      'modelfactory verify me/adapter --contribution aa --contribution bb --skip-chain',
    );
    expect(verifyCommand({ target: '/my adapters/x', hub: 'http://hub:4000' })).toBe("modelfactory verify '/my adapters/x' --hub http://hub:4000");
  });

  it('verifies and keeps the report, passing or not', async () => {
    const api = new FakeTransport();
    const verify = new VerifyManager();
    verify.connect(api);
    expect(await verify.run()).toBeNull();
    expect(verify.error?.error).toMatch(/folder or a repository id/);
    expect(api.callsOf('verify')).toEqual([]);

    verify.setTarget(' me/adapter ');
    verify.setContributions('aa\nbb');
    verify.setSkipChain(true);
    const report = await verify.run();
    expect(report?.ok).toBe(true);
    expect(api.callsOf('verify')).toEqual([[{ target: 'me/adapter', hub: null, contributions: ['aa', 'bb'], skip_chain: true }]]);

    api.verifyResult = verifyReport({ ok: false, checks: [{ subject: 'README.md', ok: false, detail: 'sha256 differs from the manifest' }] });
    expect((await verify.run())?.ok).toBe(false);
    expect(verify.report?.checks[0]?.subject).toBe('README.md');

    api.failures.verify = new ApiException('"nope" is neither a folder nor a repository id (owner/name)', null, 400);
    expect(await verify.run()).toBeNull();
    expect(verify.report).toBeNull();
    expect(verify.error?.error).toMatch(/neither a folder/);
    verify.reset();
    expect(verify.target).toBe('');
  });
});

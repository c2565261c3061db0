import { flushSync, mount, unmount } from 'svelte';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ApiException } from '../lib/api/errors';
import { jobsManager } from '../lib/managers/jobs.svelte';
import { publishManager } from '../lib/managers/publish.svelte';
import { runsManager } from '../lib/managers/runs.svelte';
import { verifyManager } from '../lib/managers/verify.svelte';
import { walletManager } from '../lib/managers/wallet.svelte';
import { router } from '../lib/router.svelte';
import { FakeTransport, address, flush, jobEvent, publication, publishPreview, runSummary, verifyReport, walletAccount } from '../lib/testing/fake-transport';
import Publish from './Publish.svelte';

let mounted: ReturnType<typeof mount> | null = null;
let target: HTMLElement;
let api: FakeTransport;

const PUBLISHER = walletAccount(1).address;

async function render(hash: string, setup: (api: FakeTransport) => void = () => {}) {
  window.location.hash = hash;
  router.start(window);
  api = new FakeTransport();
  api.runs = [
    runSummary({ id: 'run-2', name: 'still training', state: 'running', job_id: 'job-2' }),
    runSummary({ id: 'run-1', state: 'finished', adapter: '/ws/runs/run-1/adapter', last_eval_loss: 1.234 }),
  ];
  api.accounts = [walletAccount(1)];
  api.passphrases[PUBLISHER] = 'correct horse';
  setup(api);
  runsManager.connect(api);
  walletManager.connect(api);
  publishManager.connect(api);
  verifyManager.connect(api);
  await jobsManager.connect(api);
  mounted = mount(Publish, { target });
  await settle();
}

async function settle() {
  for (let i = 0; i < 3; i++) {
    flushSync();
    await flush();
  }
  flushSync();
}

function $(selector: string): HTMLElement {
  const el = target.querySelector<HTMLElement>(selector);
  if (!el) throw new Error(`nothing matches ${selector}`);
  return el;
}

function type(selector: string, value: string) {
  const el = $(selector) as HTMLInputElement;
  el.value = value;
  el.dispatchEvent(new Event('input', { bubbles: true }));
  flushSync();
}

async function click(selector: string) {
  $(selector).click();
  await settle();
}

beforeEach(() => {
  target = document.createElement('div');
  document.body.appendChild(target);
});

afterEach(() => {
  if (mounted) unmount(mounted);
  mounted = null;
  router.stop();
  for (const j of jobsManager.recent) jobsManager.dismiss(j.id);
  jobsManager.disconnect();
  runsManager.disconnect();
  walletManager.disconnect();
  publishManager.disconnect();
  publishManager.reset();
  verifyManager.disconnect();
  verifyManager.reset();
  target.remove();
});

describe('Publish screen', () => {
  it('offers only runs with an adapter, and says where to get an account', async () => {
    await render('#/publish', (api) => (api.accounts = []));
    const options = [...target.querySelectorAll<HTMLOptionElement>('[data-testid="publish-run"] option')].map((o) => o.value);
    expect(options).toEqual(['run-1']);
    expect($('[data-testid="publish-no-accounts"]').textContent).toContain('Settings');
    expect(($('[data-testid="publish-preview"]') as HTMLButtonElement).disabled).toBe(true);
  });

  it('says when no run can be published', async () => {
    await render('#/publish', (api) => (api.runs = [runSummary({ state: 'running' })]));
    expect($('[data-testid="publish-no-runs"]').textContent).toContain('Fine-tune');
  });

  it('previews exactly what will be signed and sent', async () => {
    await render('#/publish', (api) => {
      api.previewTemplate = publishPreview({ gas_problem: 'the account has 0 ETH and the registration needs 0.00042 ETH' });
    });
    type('[data-testid="publish-repo"]', 'me/help');
    await click('[data-testid="publish-preview"]');
    expect(api.callsOf('publishPreview')).toEqual([[{ run_id: 'run-1', publisher: PUBLISHER, repo: 'me/help', license: null }]]);
    expect($('[data-testid="publish-manifest-hash"]').textContent).toBe(`0x${'ab'.repeat(32)}`);
    expect($('[data-testid="publish-destination"]').textContent).toContain('me/help');
    expect($('[data-testid="publish-destination"]').textContent).toContain('http://127.0.0.1:4000');
    expect($('[data-testid="publish-chain"]').textContent).toContain('31337');
    expect($('[data-testid="publish-chain"]').textContent).toContain('http://127.0.0.1:8545');
    expect($('[data-testid="publish-gas"]').textContent).toContain('0.00042 ETH');
    expect($('[data-testid="publish-gas"]').textContent).toContain('210,000');
    expect($('[data-testid="publish-gas-problem"]').textContent).toContain('0 ETH');
    const files = [...target.querySelectorAll<HTMLElement>('[data-testid="publish-files"] tr[data-file]')];
    expect(files.map((r) => r.dataset.file)).toEqual(['adapter_model.safetensors', 'adapter_config.json', 'lineage-manifest.json', 'README.md']);
    expect(files[0]!.textContent).toContain('1'.repeat(64));
    expect(files[0]!.querySelector<HTMLElement>('[data-bytes]')?.dataset.bytes).toBe('1234567');
    const shares = [...target.querySelectorAll<HTMLElement>('[data-testid="publish-shares"] tr[data-contributor]')];
    expect(shares.map((r) => [r.dataset.contributor, r.querySelector<HTMLElement>('[data-bps]')?.dataset.bps])).toEqual([
      [address(0), '7500'],
      [address(1), '2500'],
    ]);
    expect(shares[0]!.textContent).toContain('75%');
    expect($('[data-testid="publish-uncredited"]').dataset.rows).toBe('3');
    const manifest = $('[data-testid="publish-manifest"]') as HTMLDetailsElement;
    expect(manifest.tagName).toBe('DETAILS');
    expect(JSON.parse(manifest.querySelector('pre')!.textContent!)).toMatchObject({ schema_version: 1, publisher: PUBLISHER });
    expect($('[data-testid="cli"]').textContent).toContain(`modelfactory publish run-1 --address ${PUBLISHER} --repo me/help --dry-run`);

    type('[data-testid="publish-license"]', 'MIT');
    expect($('[data-testid="publish-preview-stale"]')).toBeTruthy();
    expect(($('[data-testid="publish-sign"]') as HTMLButtonElement).disabled).toBe(true);
  });

  it('says how the shares were computed and who gets none, and sends the chosen way of sharing', async () => {
    await render('#/publish', (api) => {
      api.previewTemplate = publishPreview({ harmful: [address(2)] });
    });
    expect(($('[data-testid="publish-attribution"]') as HTMLSelectElement).value).toBe('');
    await click('[data-testid="publish-preview"]');
    expect(api.callsOf('publishPreview')).toEqual([[{ run_id: 'run-1', publisher: PUBLISHER, repo: null, license: null }]]);
    const method = $('[data-attribution-method]');
    expect(method.dataset.attributionMethod).toBe('datainf');
    expect(method.textContent).toContain('by measured influence (DataInf)');
    expect(method.querySelector('a')?.getAttribute('href')).toBe('#/finetune/runs/run-1');
    const harmful = $('[data-testid="publish-harmful"]');
    expect([...harmful.querySelectorAll<HTMLElement>('[data-harmful]')].map((h) => h.dataset.harmful)).toEqual([address(2)]);
    expect(harmful.textContent).toContain('their rows raised the evaluation loss');
    // a harmful contributor is not among those credited
    expect(target.querySelector(`[data-testid="publish-shares"] tr[data-contributor="${address(2)}"]`)).toBeNull();

    const select = $('[data-testid="publish-attribution"]') as HTMLSelectElement;
    select.value = 'row-share';
    select.dispatchEvent(new Event('change', { bubbles: true }));
    flushSync();
    expect($('[data-testid="publish-preview-stale"]')).toBeTruthy();
    expect($('[data-testid="cli"]').textContent).toContain('--attribution row-share --dry-run');
    await click('[data-testid="publish-preview"]');
    expect(api.callsOf('publishPreview')[1]).toEqual([{ run_id: 'run-1', publisher: PUBLISHER, repo: null, license: null, attribution: 'row-share' }]);
    expect($('[data-attribution-method]').dataset.attributionMethod).toBe('row-share');
    expect($('[data-attribution-method]').textContent).toContain('by rows written');
    expect(target.querySelector('[data-testid="publish-harmful"]')).toBeNull();

    type('[data-testid="publish-passphrase"]', 'correct horse');
    await click('[data-testid="publish-sign"]');
    expect($('[data-testid="publish-confirm-dialog"]').textContent).toContain('by rows written');
    await click('[data-testid="publish-confirm"]');
    expect(api.callsOf('publish')).toEqual([[{ run_id: 'run-1', publisher: PUBLISHER, repo: null, license: null, attribution: 'row-share' }, 'correct horse']]);
  });

  it('asks before signing, then follows the job to the publication', async () => {
    await render('#/publish');
    await click('[data-testid="publish-preview"]');
    type('[data-testid="publish-passphrase"]', 'correct horse');
    await click('[data-testid="publish-sign"]');
    // nothing is signed before the confirmation
    expect(api.callsOf('publish')).toEqual([]);
    const dialog = $('[data-testid="publish-confirm-dialog"]');
    expect(dialog.getAttribute('role')).toBe('alertdialog');
    expect(dialog.textContent).toContain(PUBLISHER);
    expect(dialog.textContent).toContain(`0x${'ab'.repeat(32)}`);
    expect(dialog.textContent).toContain('00010001/modelfactory-help');
    expect(dialog.textContent).toContain('chain 31337');
    expect(dialog.textContent).toContain('0.00042 ETH');

    await click('[data-testid="publish-confirm"]');
    expect(api.callsOf('publish')).toEqual([[{ run_id: 'run-1', publisher: PUBLISHER, repo: null, license: null }, 'correct horse']]);
    // the passphrase does not stay in the page
    expect(($('[data-testid="publish-passphrase"]') as HTMLInputElement).value).toBe('');
    expect(target.querySelector('[data-testid="publish-confirm-dialog"]')).toBeNull();
    const jobId = publishManager.jobId!;
    expect($('[data-testid="publish-progress"]').dataset.state).toBe('queued');

    api.push(jobEvent({ job_id: jobId, seq: 1, state: 'running', fraction: 0.7, message: 'registering on chain' }));
    await settle();
    expect($('[data-testid="publish-message"]').textContent).toContain('registering on chain');
    expect($('[data-testid="publish-cancel"]')).toBeTruthy();

    api.publications['run-1'] = publication({ job_id: jobId });
    api.push(jobEvent({ job_id: jobId, seq: 2, state: 'succeeded', fraction: 0.9, message: 'registered', at: '2025-01-01T00:10:00Z' }));
    await settle();
    expect($('[data-testid="publish-progress"]').dataset.state).toBe('succeeded');
    expect($('[role="progressbar"]').getAttribute('aria-valuenow')).toBe('100');
    expect(($('[data-testid="publish-sign"]') as HTMLButtonElement).disabled).toBe(true);
    const result = $('[data-testid="publish-result"]');
    expect(result.dataset.state).toBe('registered');
    expect($('[data-testid="publish-repo-link"]').getAttribute('href')).toBe('http://127.0.0.1:4000/00010001/modelfactory-help');
    expect($('[data-testid="publish-tx-hash"]').textContent).toBe(`0x${'cd'.repeat(32)}`);
    expect($('[data-testid="publish-result-hash"]').textContent).toBe(`0x${'ab'.repeat(32)}`);
    expect($('[data-testid="publish-verify-link"]').getAttribute('href')).toBe('#/publish/verify?target=00010001%2Fmodelfactory-help');
  });

  it('cancelling the confirmation signs nothing and forgets the passphrase', async () => {
    await render('#/publish');
    await click('[data-testid="publish-preview"]');
    type('[data-testid="publish-passphrase"]', 'correct horse');
    await click('[data-testid="publish-sign"]');
    await click('[data-testid="publish-confirm-cancel"]');
    expect(api.callsOf('publish')).toEqual([]);
    expect(($('[data-testid="publish-passphrase"]') as HTMLInputElement).value).toBe('');
  });

  it('shows a refused signature', async () => {
    await render('#/publish');
    await click('[data-testid="publish-preview"]');
    type('[data-testid="publish-passphrase"]', 'wrong');
    await click('[data-testid="publish-sign"]');
    await click('[data-testid="publish-confirm"]');
    expect($('[data-testid="publish-error"]').textContent).toContain('wrong passphrase');
    expect(target.querySelector('[data-testid="publish-progress"]')).toBeNull();
  });

  it('shows a preview error with its hint', async () => {
    await render('#/publish');
    api.failures.publishPreview = new ApiException('run run-1 has no adapter', 'Train it to the end, or resume it', 409);
    await click('[data-testid="publish-preview"]');
    expect($('[data-testid="publish-preview-error"]').textContent).toContain('Train it to the end');
  });
});

describe('Verify view', () => {
  it('verifies a repository and shows every check', async () => {
    await render('#/publish/verify?target=me%2Fhelp', (api) => {
      api.verifyResult = verifyReport({
        ok: false,
        checks: [
          { subject: 'adapter_model.safetensors', ok: true, detail: 'sha256 matches' },
          { subject: 'registry', ok: false, detail: 'no record of this manifest hash' },
        ],
      });
    });
    expect(($('[data-testid="verify-target"]') as HTMLInputElement).value).toBe('me/help');
    type('[data-testid="verify-contributions"]', 'aa\nbb\n');
    const skip = $('[data-testid="verify-skip-chain"]') as HTMLInputElement;
    skip.checked = true;
    skip.dispatchEvent(new Event('change', { bubbles: true }));
    flushSync();
    expect($('[data-testid="cli"]').textContent).toContain('modelfactory verify me/help --contribution aa --contribution bb --skip-chain');
    await click('[data-testid="verify-run"]');
    expect(api.callsOf('verify')).toEqual([[{ target: 'me/help', hub: null, contributions: ['aa', 'bb'], skip_chain: true }]]);
    expect($('[data-testid="verify-report"]').dataset.ok).toBe('false');
    expect($('[data-testid="verify-result"]').textContent).toContain('1 of 2 checks failed');
    const rows = [...target.querySelectorAll<HTMLElement>('[data-testid="verify-checks"] tr[data-check]')];
    expect(rows.map((r) => [r.dataset.check, r.dataset.ok])).toEqual([
      ['adapter_model.safetensors', 'true'],
      ['registry', 'false'],
    ]);
    expect(rows[1]!.textContent).toContain('no record of this manifest hash');
  });

  it('shows a passing report and an unreadable target', async () => {
    await render('#/publish/verify');
    type('[data-testid="verify-target"]', '/adapters/help');
    await click('[data-testid="verify-run"]');
    expect($('[data-testid="verify-result"]').textContent).toContain('all 3 checks passed');
    api.failures.verify = new ApiException('"/nope" is neither a folder nor a repository id (owner/name)', null, 400);
    type('[data-testid="verify-target"]', '/nope');
    await click('[data-testid="verify-run"]');
    expect($('[data-testid="verify-error"]').textContent).toContain('neither a folder');
    expect(target.querySelector('[data-testid="verify-report"]')).toBeNull();
  });
});

import { describe, expect, it, vi } from 'vitest';
import { ApiException } from './errors';
import { CHAT_TOKEN_EVENT, JOB_EVENT, TauriTransport, type InvokeFn, type ListenFn } from './tauri';
import { presetConfig, type ChatToken, type JobEvent } from './types';

describe('TauriTransport', () => {
  it('invokes the documented commands with camelCase argument keys', async () => {
    const invoke = vi.fn(async () => null);
    const api = new TauriTransport(invoke as unknown as InvokeFn, vi.fn() as unknown as ListenFn);
    const settings = { hub_endpoint: 'https://hub', default_backend: 'auto' as const, datanet_hub: '' };
    await api.doctor();
    await api.listModels();
    await api.addModel('/m.gguf');
    await api.removeModel('m');
    await api.listJobs();
    await api.getJob('j');
    await api.jobEvents('j');
    await api.cancelJob('j');
    await api.getSettings();
    await api.putSettings(settings);
    expect(invoke.mock.calls).toEqual([
      ['doctor'],
      ['list_models'],
      ['add_model', { source: '/m.gguf' }],
      ['remove_model', { id: 'm' }],
      ['list_jobs'],
      ['get_job', { id: 'j' }],
      ['job_events', { id: 'j' }],
      ['cancel_job', { id: 'j' }],
      ['get_settings'],
      ['put_settings', { settings }],
    ]);
  });

  it('turns a rejected ApiError into an ApiException', async () => {
    const invoke = vi.fn(async () => {
      throw { error: 'model not found: x', hint: 'List models with `modelfactory models list`' };
    });
    const api = new TauriTransport(invoke as unknown as InvokeFn, vi.fn() as unknown as ListenFn);
    const e = await api.removeModel('x').catch((x: unknown) => x);
    expect(e).toBeInstanceOf(ApiException);
    expect(e).toMatchObject({ error: 'model not found: x', hint: 'List models with `modelfactory models list`' });
  });

  it('turns a rejected string into an ApiException without a hint', async () => {
    const invoke = vi.fn(async () => {
      throw 'command list_models not found';
    });
    const api = new TauriTransport(invoke as unknown as InvokeFn, vi.fn() as unknown as ListenFn);
    await expect(api.listModels()).rejects.toMatchObject({ error: 'command list_models not found', hint: null });
  });

  it('listens to job-event and unlistens on unsubscribe, even before listen resolves', async () => {
    let handler: ((e: { payload: JobEvent }) => void) | null = null;
    const unlisten = vi.fn();
    let resolveListen: (fn: () => void) => void = () => {};
    const listen = vi.fn((name: string, fn: (e: { payload: JobEvent }) => void) => {
      expect(name).toBe(JOB_EVENT);
      handler = fn;
      return new Promise<() => void>((resolve) => (resolveListen = resolve));
    });
    const api = new TauriTransport(vi.fn() as unknown as InvokeFn, listen as unknown as ListenFn);
    const got: JobEvent[] = [];
    const stop = api.subscribe((e) => got.push(e));
    expect(JOB_EVENT).toBe('job-event');

    const event: JobEvent = { job_id: 'j', seq: 1, at: 't', state: 'running', fraction: 0.2, message: '', figures: {} };
    handler!({ payload: event });
    expect(got).toEqual([event]);

    stop();
    handler!({ payload: { ...event, seq: 2 } });
    expect(got).toHaveLength(1);
    resolveListen(unlisten);
    await Promise.resolve();
    await Promise.resolve();
    expect(unlisten).toHaveBeenCalledTimes(1);
  });

  it('invokes the chat commands', async () => {
    const invoke = vi.fn(async () => null);
    const api = new TauriTransport(invoke as unknown as InvokeFn, vi.fn() as unknown as ListenFn);
    await api.listConversations();
    await api.createConversation({ model_id: 'm' });
    await api.getConversation('c');
    await api.updateConversation('c', { model_id: 'n' });
    await api.deleteConversation('c');
    await api.stopAnswer('c');
    expect(invoke.mock.calls).toEqual([
      ['list_conversations'],
      ['create_conversation', { conversation: { model_id: 'm' } }],
      ['get_conversation', { id: 'c' }],
      ['update_conversation', { id: 'c', update: { model_id: 'n' } }],
      ['delete_conversation', { id: 'c' }],
      ['stop_answer', { id: 'c' }],
    ]);
  });

  it('invokes the run commands with their documented argument names', async () => {
    const invoke = vi.fn(async () => null);
    const api = new TauriTransport(invoke as unknown as InvokeFn, vi.fn() as unknown as ListenFn);
    const run = { model_id: 'm', dataset: '/d.jsonl', config: presetConfig('quick') };
    const request = { model_id: 'm', dataset: '/d.jsonl', max_length: 128 };
    await api.listRuns();
    await api.startRun(run);
    await api.getRun('r');
    await api.deleteRun('r');
    await api.cancelRun('r');
    await api.resumeRun('r');
    await api.previewDataset(request);
    await api.demoDatasets();
    expect(invoke.mock.calls).toEqual([
      ['list_runs'],
      ['start_run', { run }],
      ['get_run', { id: 'r' }],
      ['delete_run', { id: 'r' }],
      ['cancel_run', { id: 'r' }],
      ['resume_run', { id: 'r' }],
      ['preview_dataset', { request }],
      ['demo_datasets'],
    ]);
  });

  it('invokes the attribution commands with the run id as `id`', async () => {
    const invoke = vi.fn(async () => null);
    const api = new TauriTransport(invoke as unknown as InvokeFn, vi.fn() as unknown as ListenFn);
    await api.runAttribution('r');
    await api.startAttribution('r', { backend: null });
    await api.startAttributionAccuracy('r', { backend: 'wgpu', subsets: 24, steps: 60 });
    expect(invoke.mock.calls).toEqual([
      ['run_attribution', { id: 'r' }],
      ['start_attribution', { id: 'r', request: { backend: null } }],
      ['start_attribution_accuracy', { id: 'r', request: { backend: 'wgpu', subsets: 24, steps: 60 } }],
    ]);
  });

  it('streams chat-token events of its own conversation while send_message runs', async () => {
    let handler: ((e: { payload: ChatToken }) => void) | null = null;
    const unlisten = vi.fn();
    const listen = vi.fn(async (name: string, fn: (e: { payload: ChatToken }) => void) => {
      expect(name).toBe(CHAT_TOKEN_EVENT);
      handler = fn;
      return unlisten;
    });
    const result = { message: { seq: 2, role: 'assistant', content: 'Paris.', stats: null, created_at: 't' }, stats: {} };
    const invoke = vi.fn(async () => {
      handler!({ payload: { conversation_id: 'c1', text: 'Pa' } });
      handler!({ payload: { conversation_id: 'other', text: 'xx' } });
      handler!({ payload: { conversation_id: 'c1', text: 'ris.' } });
      return result;
    });
    const api = new TauriTransport(invoke as unknown as InvokeFn, listen as unknown as ListenFn);
    const tokens: string[] = [];
    await expect(api.sendMessage('c1', { content: 'Capital?' }, (t) => tokens.push(t))).resolves.toEqual(result);
    expect(tokens).toEqual(['Pa', 'ris.']);
    expect(invoke.mock.calls).toEqual([['send_message', { id: 'c1', content: 'Capital?', sampling: null }]]);
    expect(unlisten).toHaveBeenCalledTimes(1);
    expect(CHAT_TOKEN_EVENT).toBe('chat-token');
  });

  it('stops listening when send_message rejects', async () => {
    const unlisten = vi.fn();
    const api = new TauriTransport(
      vi.fn(async () => {
        throw { error: 'busy', hint: null };
      }) as unknown as InvokeFn,
      vi.fn(async () => unlisten) as unknown as ListenFn,
    );
    await expect(api.sendMessage('c1', { content: 'hi' }, () => {})).rejects.toMatchObject({ error: 'busy' });
    expect(unlisten).toHaveBeenCalledTimes(1);
  });

  it('invokes the Datanet and dataset commands with camelCase argument keys', async () => {
    const invoke = vi.fn(async () => null);
    const api = new TauriTransport(invoke as unknown as InvokeFn, vi.fn() as unknown as ListenFn);
    const id = 'modelfactory/python-faq';
    const query = { offset: 0, limit: 200, status: 'unlabeled' as const };
    const update = { rating: 4 };
    const content = { messages: [{ role: 'user', content: 'hi' }] };
    const dataset = { name: 'faq', sources: [], files: ['/d.jsonl'], eval_fraction: 0.1, seed: 42 };
    await api.searchHub('faq');
    await api.hubCard(id);
    await api.pullDatanet(id);
    await api.listDatanets();
    await api.importDatanet('/d.jsonl', 'mine');
    await api.datanetRows(id, query);
    await api.labelRow(id, 'c1', update);
    await api.editRow(id, 'c1', content);
    await api.datanetStats(id);
    await api.scanDuplicates(id, 0.8, false);
    await api.listDatasets();
    await api.createDataset(dataset);
    await api.datasetRows('faq', 0, 200);
    await api.deleteDataset('faq');
    expect(invoke.mock.calls).toEqual([
      ['search_hub', { search: 'faq' }],
      ['hub_card', { id }],
      ['pull_datanet', { id }],
      ['list_datanets'],
      ['import_datanet', { path: '/d.jsonl', name: 'mine' }],
      ['datanet_rows', { id, query }],
      ['label_row', { id, contributionId: 'c1', update }],
      ['edit_row', { id, contributionId: 'c1', content }],
      ['datanet_stats', { id }],
      ['scan_duplicates', { id, threshold: 0.8, reject: false }],
      ['list_datasets'],
      ['create_dataset', { dataset }],
      ['dataset_rows', { name: 'faq', offset: 0, limit: 200 }],
      ['delete_dataset', { name: 'faq' }],
    ]);
  });

  it('invokes the wallet, chain, publish, verify and rewards commands with camelCase argument keys', async () => {
    const invoke = vi.fn(async () => null);
    const api = new TauriTransport(invoke as unknown as InvokeFn, vi.fn() as unknown as ListenFn);
    const request = { run_id: 'r', publisher: '0xabc', repo: null, license: 'MIT' };
    const settings = { rpc_url: 'http://node:8545', chain_id: 5, registry: '0x1', splitter: '0x2' };
    const key = { private_key: 'ab'.repeat(32), name: null, passphrase: 'pp' };
    const verify = { target: '/adapter', contributions: [], skip_chain: false };
    const pay = { manifest_hash: '0x01', amount: '5', from: '0xabc', passphrase: 'pp' };
    await api.walletAccounts();
    await api.createAccount({ passphrase: 'pp' });
    await api.importAccount(key);
    await api.chainStatus();
    await api.chainUp();
    await api.getChainSettings();
    await api.putChainSettings(settings);
    await api.publishPreview(request);
    await api.publish(request, 'pp');
    await expect(api.publication('r')).resolves.toBeNull();
    await api.verify(verify);
    await api.rewardsPay(pay);
    await api.rewardsBalance('0xabc');
    await api.rewardsWithdraw('0xabc', 'pp');
    expect(invoke.mock.calls).toEqual([
      ['wallet_accounts'],
      ['create_account', { passphrase: 'pp', name: null }],
      ['import_account', { request: key }],
      ['chain_status'],
      ['chain_up'],
      ['get_chain_settings'],
      ['put_chain_settings', { settings }],
      ['publish_preview', { request }],
      ['publish', { request, passphrase: 'pp' }],
      ['run_publication', { id: 'r' }],
      ['verify', { request: verify }],
      ['rewards_pay', { request: pay }],
      ['rewards_balance', { address: '0xabc' }],
      ['rewards_withdraw', { address: '0xabc', passphrase: 'pp' }],
    ]);
  });
});

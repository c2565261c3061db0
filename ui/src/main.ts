import { mount } from 'svelte';
import App from './App.svelte';
import './app.css';
import { createClient } from './lib/api/select';
import { attributionManager } from './lib/managers/attribution.svelte';
import { chatManager } from './lib/managers/chat.svelte';
import { compareManager } from './lib/managers/compare.svelte';
import { curationManager } from './lib/managers/curation.svelte';
import { datanetsManager } from './lib/managers/datanets.svelte';
import { datasetsManager } from './lib/managers/datasets.svelte';
import { finetuneForm } from './lib/managers/finetune.svelte';
import { jobsManager } from './lib/managers/jobs.svelte';
import { chainManager } from './lib/managers/chain.svelte';
import { modelsManager } from './lib/managers/models.svelte';
import { publishManager } from './lib/managers/publish.svelte';
import { runsManager } from './lib/managers/runs.svelte';
import { verifyManager } from './lib/managers/verify.svelte';
import { walletManager } from './lib/managers/wallet.svelte';
import { router } from './lib/router.svelte';

const client = createClient(window);

// The token now lives in sessionStorage; keep it out of the address bar (and screenshots).
if (client.transport === 'http') {
  const params = new URLSearchParams(window.location.search);
  if (params.has('token')) {
    params.delete('token');
    const rest = params.toString();
    const { pathname, hash } = window.location;
    window.history.replaceState(window.history.state, '', `${pathname}${rest ? `?${rest}` : ''}${hash}`);
  }
}

router.start(window);
modelsManager.connect(client);
chatManager.connect(client);
compareManager.connect(client);
// before the jobs manager, so that no job event passes the runs by
runsManager.connect(client);
finetuneForm.connect(client);
attributionManager.connect(client);
datanetsManager.connect(client);
curationManager.connect(client);
datasetsManager.connect(client);
walletManager.connect(client);
chainManager.connect(client);
publishManager.connect(client);
verifyManager.connect(client);
void jobsManager.connect(client);

const target = document.getElementById('app');
if (!target) throw new Error('ModelFactory: #app is missing from index.html');

export default mount(App, { target, props: { client } });

import { describe, expect, it } from 'vitest';
import { datanetImportCommand, datanetPullCommand, datanetShowCommand, datasetRowsCommand, datasetShowCommand, datasetStatsCommand } from './cli-datanets';

describe('Datanet and dataset commands', () => {
  it('names the Datanet', () => {
    expect(datanetShowCommand('modelfactory/python-faq')).toBe('modelfactory datanet show modelfactory/python-faq');
    expect(datanetPullCommand('modelfactory/python-faq')).toBe('modelfactory datanet pull modelfactory/python-faq');
    expect(datanetImportCommand('/data/my rows.jsonl', 'mine')).toBe("modelfactory datanet import '/data/my rows.jsonl' --name mine");
    expect(datasetStatsCommand('local/mine')).toBe('modelfactory dataset stats local/mine');
    expect(datasetShowCommand('faq-accepted')).toBe('modelfactory dataset show faq-accepted');
  });
  it('carries the table’s filters and order as flags', () => {
    expect(datasetRowsCommand('modelfactory/python-faq', {})).toBe('modelfactory dataset rows modelfactory/python-faq');
    expect(
      datasetRowsCommand('modelfactory/python-faq', { search: 'list comprehension', status: 'unlabeled', tag: 'good', min_len: 10, max_len: 500, flag: 'pii', sort: 'created_at', desc: true }),
    ).toBe("modelfactory dataset rows modelfactory/python-faq --search 'list comprehension' --status unlabeled --tag good --min-len 10 --max-len 500 --flag pii --sort created-at --desc");
  });
});

"""Publishes a folder to a hub with the reference client, huggingface_hub, then reads it back.

Usage: hf_upload.py ENDPOINT TOKEN REPO_ID FOLDER OUT
Prints one JSON line: the commit, the files the hub lists with their LFS sha256, and the
paths downloaded into OUT.
"""

import json
import sys

from huggingface_hub import HfApi, hf_hub_download

endpoint, token, repo_id, folder, out = sys.argv[1:6]
api = HfApi(endpoint=endpoint, token=token)
api.create_repo(repo_id, repo_type="model", exist_ok=True)
commit = api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message="Publish adapter")
info = api.model_info(repo_id, files_metadata=True)
files = {s.rfilename: (s.lfs.sha256 if s.lfs else None) for s in info.siblings}
downloaded = [
    hf_hub_download(repo_id, name, endpoint=endpoint, token=token, cache_dir=out)
    for name in sorted(files)
]
print(json.dumps({"commit": commit.oid, "files": files, "downloaded": downloaded}))

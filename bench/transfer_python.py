"""The Python sides of `npm run bench:transfer` (bench/transfer.ts), and its zip fixture.

  transfer_python.py boto3-prefix --bucket B --prefix P --dest D
      every object under P into D, through boto3's transfer manager (s3transfer), as a
      Python job would fetch a dataset folder
  transfer_python.py boto3-zip --bucket B --key K --dest D
      the zip through boto3's download_file (ranged, parallel), then zipfile.extractall
  transfer_python.py make-zip --out Z --bytes N
      a zip of pseudo-images (about N uncompressed bytes, deflated as `zip` does by default)

Endpoint and credentials come from AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
AWS_DEFAULT_REGION. Prints one JSON line describing the settings used.
"""

import argparse
import json
import os
import sys
import zipfile


def client():
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"], config=Config(max_pool_connections=10))


def boto3_prefix(args):
    from boto3.s3.transfer import TransferConfig
    from s3transfer.manager import TransferManager

    s3 = client()
    config = TransferConfig()
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=args.bucket, Prefix=args.prefix):
        keys.extend(o["Key"] for o in page.get("Contents", []) if not o["Key"].endswith("/"))
    folders = set()
    with TransferManager(s3, config) as manager:
        futures = []
        for key in keys:
            path = os.path.join(args.dest, key[len(args.prefix) :])
            folder = os.path.dirname(path)
            if folder not in folders:
                os.makedirs(folder, exist_ok=True)
                folders.add(folder)
            futures.append(manager.download(args.bucket, key, path))
        for future in futures:
            future.result()
    print(json.dumps({"objects": len(keys), "max_concurrency": config.max_concurrency}))


def boto3_zip(args):
    from boto3.s3.transfer import TransferConfig

    s3 = client()
    config = TransferConfig()
    os.makedirs(args.dest, exist_ok=True)
    zip_path = os.path.join(args.dest, "dataset.zip")
    s3.download_file(args.bucket, args.key, zip_path, Config=config)
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(args.dest)
    os.remove(zip_path)
    print(json.dumps({"max_concurrency": config.max_concurrency, "multipart_chunksize": config.multipart_chunksize}))


def make_zip(args):
    import numpy as np

    rng = np.random.default_rng(2024)
    written = 0
    count = 0
    with zipfile.ZipFile(args.out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        names = []
        while written < args.bytes:
            size = int(rng.integers(200_000, 700_000))
            # Skewed bytes (entropy about 7.3 bits): deflate saves a few percent, as on JPEGs.
            data = np.minimum(rng.exponential(40.0, size), 255).astype(np.uint8).tobytes()
            name = f"images/batch-{count // 1000:03d}/img-{count:06d}.jpg"
            archive.writestr(name, data)
            names.append(name)
            written += size
            count += 1
        annotations = {"format_version": "1.0", "images": [{"id": i + 1, "file_name": n[len("images/") :]} for i, n in enumerate(names)]}
        text = json.dumps(annotations).encode()
        archive.writestr("annotations.json", text)
    print(json.dumps({"files": count + 1, "bytes": written + len(text), "zip_bytes": os.path.getsize(args.out)}))


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("boto3-prefix")
    p.add_argument("--bucket", required=True)
    p.add_argument("--prefix", required=True)
    p.add_argument("--dest", required=True)
    p = sub.add_parser("boto3-zip")
    p.add_argument("--bucket", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--dest", required=True)
    p = sub.add_parser("make-zip")
    p.add_argument("--out", required=True)
    p.add_argument("--bytes", type=int, required=True)
    args = parser.parse_args()
    {"boto3-prefix": boto3_prefix, "boto3-zip": boto3_zip, "make-zip": make_zip}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())

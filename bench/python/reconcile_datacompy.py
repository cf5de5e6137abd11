#!/usr/bin/env python3
"""What a user would write instead of driftwatch's reconcile: datacompy (pandas).

Compares a vendor export (CSV) with the local view dumped to CSV, joined on
order_ref, and counts the drift: rows only in the export (missing locally),
rows only in the local view (missing at the vendor), and rows whose status or
fields differ. Prints one JSON line.

Usage: reconcile_datacompy.py EXPORT.csv LOCAL.csv
"""

import json
import sys
import time

import datacompy
import pandas as pd


def main():
    export_path, local_path = sys.argv[1], sys.argv[2]
    start = time.monotonic()
    export = pd.read_csv(export_path, dtype=str)
    local = pd.read_csv(local_path, dtype=str)
    # datacompy 1.x renamed Compare to PandasCompare.
    compare = getattr(datacompy, "PandasCompare", None) or datacompy.Compare
    cmp = compare(export, local, join_columns="order_ref",
                            df1_name="vendor", df2_name="local")
    missing_local = len(cmp.df1_unq_rows)
    missing_remote = len(cmp.df2_unq_rows)
    mismatched = len(cmp.all_mismatch())
    print(json.dumps({
        "export_rows": len(export), "local_rows": len(local),
        "missing_local": missing_local, "missing_remote": missing_remote,
        "mismatched": mismatched, "seconds": time.monotonic() - start,
    }))


if __name__ == "__main__":
    main()

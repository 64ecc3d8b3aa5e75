"""List the published versions of a model repo with their test metrics.

    python -m training.versions --repo-id someone/cxr-model
"""

from __future__ import annotations

import argparse
from dataclasses import replace

from cxr_pneumonia.hub import HubSettings, card_test_metrics, hub_api, list_versions


def version_rows(settings: HubSettings) -> list[dict]:
    """One row per version tag: tag, commit, date, test accuracy and AUC from that version's card."""
    api = hub_api(settings)
    rows = []
    for version in list_versions(settings):
        commit = api.list_repo_commits(settings.repo_id, revision=version.commit)[0]
        metrics = card_test_metrics(settings, version.commit)
        rows.append({
            "tag": version.tag,
            "commit": version.commit,
            "date": commit.created_at.strftime("%Y-%m-%d %H:%M"),
            "accuracy": metrics.get("accuracy"),
            "auc": metrics.get("roc_auc"),
        })
    return rows


def format_table(rows: list[dict]) -> str:
    """A plain-text table of version rows."""
    lines = [f"{'version':10s} {'commit':12s} {'date (UTC)':16s} {'accuracy':>8s} {'AUC':>6s}"]
    for row in rows:
        accuracy = f"{row['accuracy']:.4f}" if row["accuracy"] is not None else "-"
        auc = f"{row['auc']:.4f}" if row["auc"] is not None else "-"
        lines.append(f"{row['tag']:10s} {row['commit'][:12]:12s} {row['date']:16s} {accuracy:>8s} {auc:>6s}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo-id", required=True)
    args = parser.parse_args(argv)
    print(format_table(version_rows(replace(HubSettings.from_environment(), repo_id=args.repo_id))))


if __name__ == "__main__":
    main()

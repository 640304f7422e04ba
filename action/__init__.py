"""The GitHub Action front-end (see issue: plan comments, statuses, merge-to-deploy)."""

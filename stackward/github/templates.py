"""Wording of the pull-request comment, apart from the code that decides what to say."""

from string import Template

HEADER = Template("### stackward $title for $short_sha")
NOTE = Template("> $text")
TABLE_HEAD = "| environment | validation | policy deny / warn | + ~ - ± | status |\n|---|---|---|---|---|"
TABLE_ROW = Template("| **$env** | $validation | $deny / $warn | $summary | $status |")
ROWS_MORE = Template("… and $count more environments in $where.")
NO_ENVIRONMENTS = "This pull request changes no environment's specs, modules or policies: nothing to plan."
DESTROY_WARNING = Template(
    "> [!WARNING]\n> **$count resource(s) will be destroyed or replaced** when this merges:"
)
DESTROY_ITEM = Template(">  - $env: $action $address$reason")
DESTROY_MORE = Template(">  - … and $count more in $where")
PLAN_ERROR = Template("- ❌ **$env** could not be planned: $error")
PLAN_WARNING = Template("- ⚠️ **$env**: $warning")
FINDINGS_HEAD = "#### Validation and policy"
FINDING = Template("- $icon $where **$code**: $message$hint")
LIST_MORE = Template("- … and $count more in $where")
DETAILS = Template(
    "<details><summary>$env: $summary</summary>\n\n${fence}diff\n$changes\n$fence$more\n\n</details>"
)
DIFF_MORE = Template("… and $count more lines in $where.")
DETAILS_OMITTED = Template("Details per environment are in $where.")
NO_CHANGES = Template("No changes: $envs.")
NAMES_MORE = Template("$names and $count more")
NOTES_MORE = Template("> … and $count more notes, left out to fit.")
FOOTER = Template(
    "<sub>Computed for $sha by [stackward]($run_url). Applies on merge, in promotion order.</sub>"
)
WHERE_JOB_SUMMARY = Template("the [job summary]($url)")
WHERE_PLAN_FILE = "the plan file"
WHERE_LOG = "the run's log (one annotation each)"
WHERE_STATUSES = "this commit's statuses"
SHORTENED = Template("> [!NOTE]\n> Shortened to stay under GitHub's 1 MiB limit for a step's summary.$plan")
PLAN_FILE = Template(" The full plan is in the plan file$path (the stackward step's `plan-file` output).")
TOO_MANY = Template(
    "This pull request plans $count environments: too many to record their plan hashes in one "
    "comment, so merging it applies none of them. Split it into smaller pull requests. The plans "
    "are in the [job summary]($run_url)."
)
CLOSED = "> [!NOTE]\n> This pull request was closed without merging: the plan below will not be applied."
FORK = "Pull request from a fork: specs and policies were checked; no plan is computed for forks (no secrets, and no Terraform from a fork's code)."
DRAFT = "Draft pull request: planned for review; mark it ready when it is."
REMOVED = Template(
    "This pull request deletes environment `$env`. stackward does not tear an environment down "
    "when its folder goes: its ZenML registrations and Terraform resources stay as they are. To "
    "remove them, first merge a change that deletes its specs but keeps its `Environment` "
    "document (the plan shows what is pruned and destroyed), then delete the folder."
)
POLICY_FILES = Template(
    "Policy files changed in this pull request ($files). They were not used to judge it: the "
    "policies of the base branch were. Changes to policies need their owners' review."
)
APPLY_HEAD = Template("### stackward apply of `$short_sha`")
APPLY_ROW = Template("| **$env** | $result | $summary | $detail |")
APPLY_TABLE_HEAD = "| environment | result | changes | details |\n|---|---|---|---|"
APPLY_FOOTER = Template("<sub>[run]($run_url)</sub>")

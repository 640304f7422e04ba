package stackward.approvals_test

import data.stackward.approvals
import rego.v1

config := {"approvals": {"environments": ["prod"]}}

pr(approvals) := {
	"author": "dev",
	"head_sha": "abcdef1234",
	"environment_files": ["environments/prod/stack.yaml"],
	"code_owners": {"environments/prod/stack.yaml": ["@acme/platform", "@lead"]},
	"teams": {"acme/platform": ["Alice", "bob"]},
	"unreadable_teams": [],
	"approvals": approvals,
}

test_no_approval_is_denied if {
	results := approvals.deny_unapproved with input as {"environment": {"name": "prod"}, "pull_request": pr([])} with data.approvals as config.approvals
	count(results) == 1
	some r in results
	r.msg == "prod changes environments/prod/stack.yaml (owned by @acme/platform, @lead) without an approval from one of its owners on abcdef1"
}

test_a_team_members_approval_on_the_head_passes if {
	count(approvals.deny_unapproved) == 0 with input as {"environment": {"name": "prod"}, "pull_request": pr([{"user": "alice", "on_head": true}])} with data.approvals as config.approvals
	count(approvals.deny_unapproved) == 0 with input as {"environment": {"name": "prod"}, "pull_request": pr([{"user": "lead", "on_head": true}])} with data.approvals as config.approvals
}

test_an_approval_of_an_older_commit_or_by_a_stranger_or_the_author_does_not_count if {
	count(approvals.deny_unapproved) == 1 with input as {"environment": {"name": "prod"}, "pull_request": pr([{"user": "alice", "on_head": false}])} with data.approvals as config.approvals
	count(approvals.deny_unapproved) == 1 with input as {"environment": {"name": "prod"}, "pull_request": pr([{"user": "mallory", "on_head": true}])} with data.approvals as config.approvals
	count(approvals.deny_unapproved) == 1 with input as {"environment": {"name": "prod"}, "pull_request": object.union(pr([{"user": "lead", "on_head": true}]), {"author": "lead"})} with data.approvals as config.approvals
}

test_a_file_without_owners_is_denied if {
	unowned := object.union(object.remove(pr([]), ["code_owners"]), {"code_owners": {}})
	count(approvals.deny_unowned) == 1 with input as {"environment": {"name": "prod"}, "pull_request": unowned} with data.approvals as config.approvals
}

test_off_unless_configured_and_outside_pull_requests if {
	count(approvals.deny_unapproved) == 0 with input as {"environment": {"name": "prod"}, "pull_request": pr([])}
	count(approvals.deny_unapproved) == 0 with input as {"environment": {"name": "dev"}, "pull_request": pr([])} with data.approvals as config.approvals
	count(approvals.deny_unapproved) == 0 with input as {"environment": {"name": "prod"}, "pull_request": null} with data.approvals as config.approvals
}

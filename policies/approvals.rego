# Approvals: a pull request that changes a listed environment needs, for each changed file that
# touches it, an approval from one of the file's code owners (CODEOWNERS as the base branch
# has it, GitHub's syntax) on the head commit that was planned. The pull request's reviews
# are read again when it is merged, so the rule holds at apply too.
#
# Off unless configured: a data document beside the policies lists the environments, e.g.
# policies/approvals.yaml:
#   approvals:
#     environments: [prod]
# Team owners (@org/team) count when the token may read the team's members (members: read);
# the Actions token cannot, and then only user owners' approvals count.
package stackward.approvals

import rego.v1

required if input.environment.name in object.get(data, ["approvals", "environments"], [])

owners(file) := object.get(input.pull_request.code_owners, file, [])

deny_unapproved contains result if {
	required
	input.pull_request
	some file in input.pull_request.environment_files
	count(owners(file)) > 0
	not approved(owners(file))
	result := {
		"msg": sprintf("%s changes %s (owned by %s) without an approval from one of its owners on %s", [input.environment.name, file, concat(", ", owners(file)), substring(input.pull_request.head_sha, 0, 7)]),
		"fix": sprintf("ask one of %s to approve the pull request's latest commit", [concat(", ", owners(file))]),
		"policy_id": "SW014",
	}
}

deny_unowned contains result if {
	required
	input.pull_request
	some file in input.pull_request.environment_files
	count(owners(file)) == 0
	result := {
		"msg": sprintf("%s changes %s, which has no code owner to approve it", [input.environment.name, file]),
		"fix": "add a CODEOWNERS rule that covers it (on the default branch)",
		"policy_id": "SW014",
	}
}

warn_unreadable_team contains result if {
	required
	input.pull_request
	some team in input.pull_request.unreadable_teams
	result := {
		"msg": sprintf("the members of @%s could not be read, so its members' approvals do not count", [team]),
		"fix": "give the action a token that may read the organization's teams (members: read)",
		"policy_id": "SW014",
	}
}

approved(file_owners) if {
	some approval in input.pull_request.approvals
	approval.on_head
	lower(approval.user) != lower(input.pull_request.author)
	some owner in file_owners
	owns(owner, approval.user)
}

owns(owner, user) if lower(owner) == lower(concat("", ["@", user]))

owns(owner, user) if {
	startswith(owner, "@")
	contains(owner, "/")
	some team, members in input.pull_request.teams
	lower(owner) == lower(concat("", ["@", team]))
	some member in members
	lower(member) == lower(user)
}

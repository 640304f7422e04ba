# Every resource belongs to a team the platform knows (conftest `violation` objects, Rego v1);
# the teams are data (teams.json).
package main

violation contains {"msg": msg, "resource": sprintf("%s/%s", [r.kind, r.name])} if {
	some r in input.resources
	not r.labels.team in data.teams
	msg := sprintf("%s/%s belongs to team %q, which is not one of %s", [r.kind, r.name, object.get(r.labels, "team", ""), concat(", ", data.teams)])
}

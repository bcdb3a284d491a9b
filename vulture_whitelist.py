"""Names the dead-code check of `make lint` (vulture, at 80 % confidence) cannot see used.

Vulture only reads names: each line below uses one, and says who really uses it. This file is never imported.
"""

# gql calls PartnerTransport.execute(request, extra_args=..., upload_files=...): the keyword is gql's signature.
upload_files  # noqa: B018, F821  (app/backends/iometer/client.py)
# Named inside the string type alias `Info = "GraphQLResolveInfo[RequestContext]"`.
GraphQLResolveInfo  # noqa: B018, F821  (app/backends/iometer/emulator/schema.py)

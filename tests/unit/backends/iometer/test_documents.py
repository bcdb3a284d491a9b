"""Every document the adapter sends validates against the pinned SDL; the SDL says what docs/vendors/iometer.md pins."""

from __future__ import annotations

import pytest
from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLNonNull,
    GraphQLObjectType,
    OperationDefinitionNode,
    VariableNode,
    build_schema,
    parse,
    print_ast,
    validate,
    visit,
)
from graphql.language import Visitor

from app.backends.iometer import documents as docs

SCHEMA = build_schema(docs.schema_sdl())


@pytest.mark.parametrize("name", sorted(docs.ALL_DOCUMENTS))
def test_document_validates_against_the_sdl(name: str) -> None:
    document = docs.ALL_DOCUMENTS[name].document
    assert validate(SCHEMA, document) == []
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    assert [op.name.value for op in operations if op.name] == [name]


@pytest.mark.parametrize("name", sorted(docs.ALL_DOCUMENTS))
def test_arguments_come_from_variables_or_fixed_enums(name: str) -> None:
    """Caller input travels only in variables: every argument is a variable, except the fixed
    `limit: 1` of the medium probe (a meter's first reading)."""
    literals: list[str] = []

    class ArgumentVisitor(Visitor):
        def enter_argument(self, node, *_):  # type: ignore[no-untyped-def]
            if not isinstance(node.value, VariableNode):
                literals.append(f"{node.name.value}: {print_ast(node.value)}")

    visit(docs.ALL_DOCUMENTS[name].document, ArgumentVisitor())
    assert set(literals) <= {"limit: 1"}


def test_a_document_with_a_wrong_field_would_fail_the_check() -> None:
    """The validation above can fail: a misspelt field is reported."""
    assert validate(SCHEMA, parse("query { partner { identifier } }"))


def test_enums_are_pinned_in_lower_case() -> None:
    expected = {
        "ConnectionStatus": ["connected", "disconnected"],
        "CoreAttachmentStatus": ["attached", "detached"],
        "CorePowerStatus": ["battery", "wired"],
        "PinStatus": ["missing", "entering", "entered"],
        "ObisFormat": ["hex", "decimal", "short", "full"],
    }
    for name, values in expected.items():
        enum = SCHEMA.type_map[name]
        assert isinstance(enum, GraphQLEnumType)
        assert list(enum.values) == values


def test_root_types_and_nullability_are_as_pinned() -> None:
    query = SCHEMA.query_type
    assert query is not None
    assert str(query.fields["installation"].type) == "Installation"
    assert str(query.fields["installations"].type) == "[Installation!]!"
    assert str(query.fields["partner"].type) == "Partner!"
    assert str(query.fields["readings"].type) == "MeterReadingsResponse!"
    assert str(query.fields["connectUrl"].type) == "String!"
    assert SCHEMA.mutation_type is not None
    assert str(SCHEMA.mutation_type.fields["disableInstallation"].type) == "Boolean!"
    assert SCHEMA.subscription_type is not None
    live = SCHEMA.subscription_type.fields["liveReadings"]
    assert str(live.args["installationId"].type) == "ID!"
    assert str(live.args["obisCodes"].type) == "[ObisCode]"
    pagination = SCHEMA.type_map["Pagination"]
    assert isinstance(pagination, GraphQLInputObjectType)
    assert {k: str(v.type) for k, v in pagination.fields.items()} == {"limit": "Int", "offset": "Int"}
    for type_name, field_name, type_text in [
        ("Partner", "meter", "Meter"),
        ("Installation", "externalId", "String"),
        ("Installation", "currentDevice", "Device"),
        ("Installation", "devices", "[Device!]!"),
        ("Meter", "installation", "Installation!"),
        ("Meter", "number", "MeterNumber!"),
        ("DeviceCore", "batteryLevel", "Int!"),
        ("MeterReading", "values", "[MeterReadingValue!]!"),
        ("MeterReadingValue", "obisCode", "ObisCode!"),
        ("MeterReadingsResponse", "cursor", "String"),
    ]:
        object_type = SCHEMA.type_map[type_name]
        assert isinstance(object_type, GraphQLObjectType)
        assert str(object_type.fields[field_name].type) == type_text, (type_name, field_name)
    readings_args = SCHEMA.type_map["Meter"].fields["readings"].args  # type: ignore[union-attr]
    assert {k: str(v.type) for k, v in readings_args.items()} == {
        "startTime": "DateTime",
        "limit": "Int",
        "cursor": "String",
    }
    assert not isinstance(readings_args["startTime"].type, GraphQLNonNull)

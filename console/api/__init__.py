"""The REST API (Django REST framework, schema by drf-spectacular): the same roles, masking and
audit as the pages. Every view declares ``required_roles`` (see console.access)."""

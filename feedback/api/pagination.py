"""Cursor pagination: stable under inserts, and cheap at any depth of a long list."""

from rest_framework.exceptions import ValidationError
from rest_framework.pagination import CursorPagination

PAGE_SIZE_ERROR = "A whole number from 1 is required (pages hold at most 1000)."


class IdCursorPagination(CursorPagination):
    ordering = "id"
    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 1000

    def get_page_size(self, request) -> int:
        """The asked size, at most `max_page_size`. A malformed one is refused rather than
        silently replaced by the default, as DRF does, so a client learns of its mistake."""
        values = request.query_params.getlist(self.page_size_query_param)
        if not values:
            return self.page_size
        if len(values) > 1 or not values[0].isascii() or not values[0].isdigit():
            raise ValidationError({self.page_size_query_param: [PAGE_SIZE_ERROR]})
        if int(values[0]) < 1:
            raise ValidationError({self.page_size_query_param: [PAGE_SIZE_ERROR]})
        return min(int(values[0]), self.max_page_size)

    def get_schema_operation_parameters(self, view) -> list[dict]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"]["minimum"] = 1
                parameter["description"] = PAGE_SIZE_ERROR
        return parameters

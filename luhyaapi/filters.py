"""List filters of the API: DRF's search, whose refusals name the ``search`` parameter like every other 400."""

from __future__ import annotations

from rest_framework import exceptions, filters


class SearchFilter(filters.SearchFilter):
    """``?search=`` over the view's ``search_fields``; a value the database cannot take (a NUL character) is a 400
    naming ``search``."""

    def get_search_terms(self, request) -> list[str]:
        try:
            return super().get_search_terms(request)
        except exceptions.ValidationError as exc:
            raise exceptions.ValidationError({self.search_param: exc.detail}) from None

"""Forms of the admin console."""

from django import forms

from luhyaapi.validators import InvalidValue, validate_display_name
from luhyadb.models import Image


class ImageForm(forms.ModelForm):
    """An image's properties (the notes' list); the file is uploaded on the image's page."""

    class Meta:
        model = Image
        fields = ("name", "os_type", "arch", "usage", "owner_group", "description")
        widgets = {"description": forms.Textarea(attrs={"rows": 3})}

    def clean_name(self) -> str:
        try:
            return validate_display_name(self.cleaned_data["name"])
        except InvalidValue as exc:
            raise forms.ValidationError(exc.message) from None

    def clean_description(self) -> str:
        description = self.cleaned_data["description"]
        if "\x00" in description:
            raise forms.ValidationError("may not contain NUL characters")
        return description

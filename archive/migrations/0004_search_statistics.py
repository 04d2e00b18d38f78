from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("archive", "0003_search_index"),
    ]

    operations = [
        migrations.CreateModel(
            name="SearchStatistic",
            fields=[
                ("token", models.CharField(max_length=100, primary_key=True, serialize=False)),
                ("fraction", models.FloatField()),
            ],
        ),
    ]

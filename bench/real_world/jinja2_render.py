"""jinja2: an HTML report of 20,000 rows rendered from a template with loops and filters."""
import jinja2

template = jinja2.Environment(autoescape=True).from_string("""
<table>
{% for row in rows %}
  <tr class="{{ loop.cycle('odd', 'even') }}">
    <td>{{ row.id }}</td><td>{{ row.name | title }}</td>
    <td>{{ '%.2f' | format(row.price) }}</td>
    <td>{% for tag in row.tags %}<span>{{ tag | upper }}</span>{% endfor %}</td>
  </tr>
{% endfor %}
</table>
""")
rows = [{"id": i, "name": f"item number {i}", "price": i * 1.37, "tags": [f"t{i % 7}", f"g{i % 3}"]}
        for i in range(20_000)]
pages = [template.render(rows=rows) for _ in range(3)]
print(len(pages[0]), sum(len(p) for p in pages))

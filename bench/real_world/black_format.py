"""black: formatting a large, badly formatted Python file (generated, 200 functions)."""
import black

parts = []
for i in range(200):
    parts.append(
        f"def function_{i}( a,b ,c= {i},*args,**kw ):\n"
        f"  x=[a,b,c,{i},{{ 'k{i}':a , 'v':[b,c] }}]\n"
        f"  if a>b and (b<c or c=={i}) :return x\n"
        f"  return {{'r':x,'n':len( args )+len(kw),'s':'s' * {i % 7}}}\n"
    )
source = "\n".join(parts)
out = black.format_str(source, mode=black.Mode())
print(len(source), len(out), out.count("\n"))

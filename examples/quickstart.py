# %% [markdown]
# # TTC Lab from Python
#
# A notebook in the percent format: open it in Jupyter (with jupytext) or VS Code as a notebook, or run it as a
# script (`python examples/quickstart.py`); `tests/test_api.py` runs it. It uses the shipped checkpoints only.

# %%
import ttc

ck = ttc.load("prefix_sums-recursive")  # a zoo name, or a path to a .safetensors file
print(ck.name, ck.family, ck.arch, ck.model.num_params(), "parameters")

# %% [markdown]
# Does more iteration help? The recursive model trained on 32 bits, run on 128-bit problems for 120 iterations.

# %%
run = ttc.run(ck, size=128, iters=120, n=50, seed=0)
print(f"best {run.best_accuracy:.0%} at iteration {run.best_iter}, final {run.final_accuracy:.0%}, {run.precision}")
df = run.to_pandas()  # one row per iteration: accuracy, residual
print(df.iloc[[0, 29, 59, 119]].to_string(index=False))

# %% [markdown]
# Difficulty, not size: addition problems whose longest carry chain is exactly 40, and the iteration at which each
# problem was solved for good, against the physical limit (carry chain / cells moved per iteration).

# %%
add = ttc.run("addition-recursive", size=64, difficulty=40, iters=80, n=20, seed=1)
probs = add.problems()
print(f"{add.difficulty_name} {int(add.difficulty[0])}: solved at iterations {sorted(set(probs.solved_at.dropna()))}, "
      f"the limit is {40 / add.reach_per_iteration:.0f}")

# %% [markdown]
# Fixed points, halting and breadth (`python -m ttc analyze`), and a DEQ's training memory.

# %%
an = ttc.analyze(ck, size=64, iters=60, starts=3, n=20, seed=0)
print("AA score", round(an["path_independence"]["aa_score"], 4))
mem = ttc.memory("prefix_sums-deq", size=32, iters=(10, 40), batch=2)
print(mem[["mode", "iters", "saved_bytes"]].to_string(index=False))

# %%
fig = run.figure()  # a plotly figure: fig.show() in a notebook, fig.write_html("run.html") anywhere
print(len(fig.data), "traces")

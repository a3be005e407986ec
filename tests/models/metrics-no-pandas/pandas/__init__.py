# Stands for an environment without pandas: the model's folder comes first on sys.path,
# so `import pandas` finds this and fails as it would with pandas not installed.
raise ImportError("No module named 'pandas'")

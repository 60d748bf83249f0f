from .set_env import register_all_modules, setup_runtime

__all__ = ['register_all_modules', 'setup_runtime']

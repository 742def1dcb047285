import os, time
from tinyo import DES, Config, TinyOConfig, meta_task

ROOT = os.environ["TINYO_V3_ROOT"]


def upper(context):
    src, dst = context['config']['src'], context['config']['dst']
    if os.path.basename(src).startswith('bad'):
        raise ValueError('bad input')
    while os.path.basename(src).startswith('slow') and not os.path.exists(ROOT + '/gate'):
        time.sleep(0.02)
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    with open(src) as fh:
        data = fh.read()
    with open(dst, 'w') as fh:
        fh.write(data.upper())


def count(context):
    return None


@meta_task(root=True)
def on_file(event):
    if not event.startswith(ROOT + '/in/'):
        return (None, [])
    name = os.path.basename(event)
    up = ROOT + '/out/' + name + '.up'
    return (None, [DES(deps=[event], targs=[up], ops=[(upper, Config(src=event, dst=up))]),
                   DES(deps=[up], targs=['len.' + name], ops=[(count, Config())])])


config = TinyOConfig(sql_conn=ROOT + '/state.db', dirs=[ROOT + '/in'], max_workers=2)

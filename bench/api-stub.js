// The Kubernetes API stand-in for the bench's memory runs: the tests' own stub (test/helpers/k8s-stub.ts: real paths,
// verbs, content types, MicroTime checks, watches), hosted in a process of its own and driven over IPC. It is loaded
// through the TypeScript loader tap already uses, rather than copied to JavaScript, so that the bench's reconcile loops
// talk to the very stand-in the tests hold to the real API, and no second one can drift from it.
// Started by bench/memory.js as `node --import @tapjs/typescript/import bench/api-stub.js` (TS_NODE_TRANSPILE_ONLY=1).
const { startK8sStub, k8sFixture } = await import('../test/helpers/k8s-stub.ts');

const DEPLOYMENTS = '/apis/apps/v1/namespaces/domino-platform/deployments';
const DEP = `${DEPLOYMENTS}/mlflow`;
const SA = '/api/v1/namespaces/domino-platform/serviceaccounts/mlflow';
const leasePath = (namespace, name) => `/apis/coordination.k8s.io/v1/namespaces/${namespace}/leases/${name}`;

const stub = await startK8sStub();
// an installed world: mlflow already rolled out with the mutation, its ServiceAccount as Domino's chart left it (the
// loop's first check annotates it), no admission webhook registered (the loop must not need to restart anything)
stub.seed(DEP, k8sFixture('deployment-mlflow-mutated'));
stub.seed(SA, k8sFixture('serviceaccount-mlflow'));

const handlers = {
  /** a Lease as the chart's install left it, under this name: each webhook of the bench has its own, so each leads */
  seedLease({ namespace, name }) {
    const lease = k8sFixture('lease');
    stub.seed(leasePath(namespace, name), { ...lease, metadata: { ...lease.metadata, name, namespace } });
  },
  /** what the loop behind this Lease has done: who holds it and when it renewed, open watches, requests by kind */
  state({ namespace, name }) {
    const lease = stub.object(leasePath(namespace, name));
    const count = (method, path) => stub.requests.filter((q) => q.method === method && q.path.split('?')[0] === path).length;
    return {
      holder: lease?.spec?.holderIdentity ?? null,
      renewTime: lease?.spec?.renewTime ?? null,
      watches: stub.watching(DEPLOYMENTS),
      deploymentReads: count('GET', DEP),
      deploymentWatches: count('GET', DEPLOYMENTS),
      serviceAccountReads: count('GET', SA),
      serviceAccountPatches: count('PATCH', SA),
      deploymentPatches: count('PATCH', DEP),
      leaseUpdates: count('PUT', leasePath(namespace, name)),
    };
  },
};

process.on('message', ({ id, op, args }) => {
  try {
    process.send({ id, result: handlers[op](args) });
  } catch (err) {
    process.send({ id, error: err.message });
  }
});
process.on('disconnect', () => void stub.close().then(() => process.exit(0)));
process.send({ ready: { url: stub.url, kubeconfig: stub.kubeconfig } });

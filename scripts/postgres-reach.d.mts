export declare function letPostgresReachBinaries(): Promise<void>;
